import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { decodeValue } from '@weft/stage';
import { locate } from './locate.js';

const FIXTURES = fileURLToPath(new URL('../test-fixtures/', import.meta.url));
const SRC = join(FIXTURES, 'proj/src');

type Fn = (...args: never[]) => unknown;

interface Lib {
  describe: (n: number) => string;
}
interface Format {
  formatLabel: (label: string, n: number) => string;
}
interface Closures {
  makeClosure: (
    x: number,
    label: string,
    obj: { nested: { k: number } },
    bytes: Uint8Array,
  ) => (extra: number) => string;
  captureHelper: () => Fn;
  captureInstance: () => Fn;
  captureFunctionInObject: () => Fn;
  holder: { make: () => Fn };
  makeShouter: (s: string) => Fn;
  makeFactorial: () => Fn;
  makeShadowing: (heavy: number) => Fn;
  shout: (s: string) => string;
}

// The fixture project is loaded by Node itself (see vitest.config.mjs), as
// a user's code would be.
async function fixture<T>(file: string): Promise<T> {
  return (await import(join(SRC, file))) as T;
}

describe('locate', () => {
  it('finds an exported function: its file, position and export name', async () => {
    const lib = await fixture<Lib>('lib.js');
    const located = locate(lib.describe);
    expect(located).toEqual({
      file: join(SRC, 'lib.js'),
      line: 7,
      column: 25,
      exportName: 'describe',
      captured: {},
      moduleImportsUsed: [],
    });
  });

  it('finds an export of a TypeScript module loaded through a .js specifier', async () => {
    const format = await fixture<Format>('format.ts');
    const located = locate(format.formatLabel);
    expect(located.file).toBe(join(SRC, 'format.ts'));
    expect(located.exportName).toBe('formatLabel');
  });

  it('recognises default, renamed and variable exports', async () => {
    const mod = await fixture<{ default: Fn; renamed: Fn; arrow: Fn }>('exports.js');
    expect(locate(mod.default).exportName).toBe('default');
    expect(locate(mod.renamed).exportName).toBe('renamed');
    expect(locate(mod.arrow).exportName).toBe('arrow');
  });

  it('sends an anonymous default export as a closure', async () => {
    const mod = await fixture<{ default: Fn }>('anon-default.js');
    const located = locate(mod.default);
    expect(located.exportName).toBeUndefined();
    expect(located.closure!.code).toContain('return ((n) => n * 2);');
  });

  it('works while the defining module is still running its top-level await', async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', join(FIXTURES, 'register-ts.mjs'), join(FIXTURES, 'top-level-await.mjs')],
      { timeout: 30_000 },
    );
    expect(JSON.parse(stdout)).toEqual({ exportName: 'exported', captured: { x: 2 } });
  });

  it('captures values and imports of an inline closure', async () => {
    const closures = await fixture<Closures>('closures.js');
    const bytes = new Uint8Array([1, 2, 3]);
    const fn = closures.makeClosure(3, 'hi', { nested: { k: 4 } }, bytes);
    const located = locate(fn);

    expect(located.file).toBe(join(SRC, 'closures.js'));
    expect(located.exportName).toBeUndefined();
    expect(located.captured).toEqual({ bytes, label: 'hi', obj: { nested: { k: 4 } }, x: 3 });
    expect(located.moduleImportsUsed).toEqual(['./math.js', 'fake-pkg']);

    const closure = located.closure!;
    expect(closure.path).toMatch(/\/src\/closures\.weft-closure-[0-9a-f]{12}\.mjs$/);
    expect(closure.capturedPath).toBe(closure.path.replace(/\.mjs$/, '.msgpack'));
    expect(closure.code).toContain('import { heavy } from "./math.js";');
    expect(closure.code).toContain('import * as math from "./math.js";');
    expect(closure.code).toContain('import { pkgValue } from "fake-pkg";');
    expect(closure.code).toContain('let x = $captured["x"];');
    expect(closure.code).toContain(`return (${fn.toString()});`);
    // Only what the closure reads: not `unusedHere`, not the module's other functions.
    expect(closure.code).not.toContain('unusedHere');
    expect(closure.code).not.toContain('helper');
    expect(decodeValue(closure.capturedBytes)).toEqual({ bytes, label: 'hi', obj: { nested: { k: 4 } }, x: 3 });
  });

  it('gives the same module for the same closure and captured values', async () => {
    const closures = await fixture<Closures>('closures.js');
    const make = () => closures.makeClosure(1, 'a', { nested: { k: 2 } }, new Uint8Array([9]));
    const [a, b] = [locate(make()), locate(make())];
    expect(a.closure!.path).toBe(b.closure!.path);
    const c = locate(closures.makeClosure(1, 'b', { nested: { k: 2 } }, new Uint8Array([9])));
    expect(c.closure!.path).not.toBe(a.closure!.path);
  });

  it('imports an exported function of the defining module instead of capturing it', async () => {
    const closures = await fixture<Closures>('closures.js');
    const located = locate(closures.makeShouter('hey'));
    expect(located.captured).toEqual({ s: 'hey' });
    expect(located.moduleImportsUsed).toEqual(['./closures.js']);
    expect(located.closure!.code).toContain('import { shout } from "./closures.js";');
  });

  it('captures a parameter that shadows an import of the same name', async () => {
    const closures = await fixture<Closures>('closures.js');
    const located = locate(closures.makeShadowing(21));
    expect(located.captured).toEqual({ heavy: 21 });
    expect(located.moduleImportsUsed).toEqual([]);
  });

  it('binds a closure that refers to itself', async () => {
    const closures = await fixture<Closures>('closures.js');
    const located = locate(closures.makeFactorial());
    expect(located.captured).toEqual({});
    expect(located.closure!.code).toContain('const fact = ((n) =>');
    expect(located.closure!.code).toContain('return fact;');
  });

  it('refuses a closure capturing a helper function that is not exported', async () => {
    const closures = await fixture<Closures>('closures.js');
    expect(() => locate(closures.captureHelper())).toThrow(
      `captures "helper", a function that is not exported from ${join(SRC, 'closures.js')}; export it or import it`,
    );
  });

  it('refuses a closure capturing a class instance, naming the variable', async () => {
    const closures = await fixture<Closures>('closures.js');
    expect(() => locate(closures.captureInstance())).toThrow(
      'captured variable "counter": an instance of class Counter cannot be sent',
    );
  });

  it('refuses a function nested in a captured object, naming the path', async () => {
    const closures = await fixture<Closures>('closures.js');
    expect(() => locate(closures.captureFunctionInObject())).toThrow(
      'captured variable "cfg".handler: a function cannot be sent',
    );
  });

  it('refuses a closure that uses this', async () => {
    const closures = await fixture<Closures>('closures.js');
    expect(() => locate(closures.holder.make())).toThrow(
      new RegExp(`closure at ${join(SRC, 'closures.js')}:\\d+:\\d+ uses \`this\``),
    );
  });

  it('refuses built-in and bound functions', async () => {
    const closures = await fixture<Closures>('closures.js');
    expect(() => locate(Math.max)).toThrow('max is a built-in function');
    expect(() => locate(closures.shout.bind(null))).toThrow('is a bound function');
  });
});
