import { describe, expect, it } from 'vitest';
import { analyzeFunctionSource, findImportBindings, findLocalExports, findModuleReferences } from './source.js';

describe('analyzeFunctionSource', () => {
  it('finds free identifiers, not locals, properties, labels or shadowed names', () => {
    const source = `(n) => {
      const { a: renamed, ...rest } = input;
      let local = { short, key: other.prop };
      outer: for (const item of list) { if (item) break outer; }
      function inner(x) { const shadow = 1; return x + shadow + captured; }
      class K { m() { return this.field; } }
      try { risky(); } catch (e) { void e; }
      return [renamed, rest, local, inner(n), new K(), Math.max(1, 2), import.meta.url];
    }`;
    const analysis = analyzeFunctionSource(source)!;
    expect(analysis.freeNames).toEqual(['Math', 'captured', 'input', 'list', 'other', 'risky', 'short']);
    expect(analysis.usesThis).toBe(false);
    expect(analysis.expression).toBe(`(${source})`);
  });

  it('sees the name of a named function expression as its own', () => {
    expect(analyzeFunctionSource('function fact(n) { return n <= 1 ? 1 : n * fact(n - 1); }')!.freeNames).toEqual([]);
  });

  it('flags this and super that do not belong to a nested function or class', () => {
    expect(analyzeFunctionSource('() => this.x')!.usesThis).toBe(true);
    expect(analyzeFunctionSource('function () { return this; }')!.usesThis).toBe(true);
    expect(analyzeFunctionSource('() => function () { return this; }')!.usesThis).toBe(false);
    expect(analyzeFunctionSource('m() { return super.m(); }')!.usesThis).toBe(true);
  });

  it('flags the arguments of an enclosing function only in arrows', () => {
    expect(analyzeFunctionSource('() => arguments[0]')!.usesOuterArguments).toBe(true);
    expect(analyzeFunctionSource('function () { return arguments[0]; }')!.usesOuterArguments).toBe(false);
  });

  it('handles methods written in shorthand, and recognises classes and accessors', () => {
    const method = analyzeFunctionSource('async run(x) { return go(x); }')!;
    expect(method.freeNames).toEqual(['go']);
    expect(method.expression).toBe('Object.values({async run(x) { return go(x); }})[0]');
    expect(analyzeFunctionSource('class A { }')!.isClass).toBe(true);
    expect(analyzeFunctionSource('get x() { return 1; }')!.isAccessor).toBe(true);
    expect(analyzeFunctionSource('not a function {')).toBeUndefined();
  });
});

describe('findImportBindings', () => {
  it('lists value bindings with their specifiers and attributes, skipping type-only ones', () => {
    const text = `
      import def, { a, b as c, type T } from './x.js';
      import * as ns from 'pkg';
      import type { U } from './types.js';
      import data from './d.json' with { type: 'json' };
      import './side-effect.js';
    `;
    expect(findImportBindings(text, '/p/m.ts')).toEqual([
      { local: 'def', imported: 'default', specifier: './x.js', attributes: undefined },
      { local: 'a', imported: 'a', specifier: './x.js', attributes: undefined },
      { local: 'c', imported: 'b', specifier: './x.js', attributes: undefined },
      { local: 'ns', imported: '*', specifier: 'pkg', attributes: undefined },
      { local: 'data', imported: 'default', specifier: './d.json', attributes: "with { type: 'json' }" },
    ]);
  });
});

describe('findModuleReferences', () => {
  it('finds static, re-export, dynamic-literal and require references', () => {
    const text = `
      import a from './a.js';
      import type { T } from './types.js';
      export * from './b.js';
      export type { U } from './types2.js';
      const c = await import('./c.js');
      const d = await import(\`./d.js\`);
      const e = require('e-pkg');
      const computed = await import(name);
    `;
    expect(findModuleReferences(text, '/p/m.ts')).toEqual([
      { specifier: './a.js', kind: 'import' },
      { specifier: './b.js', kind: 'export' },
      { specifier: './c.js', kind: 'dynamic' },
      { specifier: './d.js', kind: 'dynamic' },
      { specifier: 'e-pkg', kind: 'require' },
    ]);
  });
});

describe('findLocalExports', () => {
  it('maps exported module bindings to their export names, leaving out re-exports and types', () => {
    const text = `
      export function f() {}
      export default function g() {}
      export const a = 1, { b, c: [d] } = obj;
      const local = 1;
      export { local as renamed, local };
      export { x } from './elsewhere.js';
      export type { T } from './types.js';
      export class K {}
    `;
    expect(findLocalExports(text, '/p/m.ts')).toEqual([
      { local: 'f', exported: 'f' },
      { local: 'g', exported: 'default' },
      { local: 'a', exported: 'a' },
      { local: 'b', exported: 'b' },
      { local: 'd', exported: 'd' },
      { local: 'local', exported: 'renamed' },
      { local: 'local', exported: 'local' },
      { local: 'K', exported: 'K' },
    ]);
    expect(findLocalExports('const h = () => 1;\nexport default h;', '/p/m.js')).toEqual([
      { local: 'h', exported: 'default' },
    ]);
    expect(findLocalExports('export default () => 1;', '/p/m.js')).toEqual([]);
  });
});
