import { createReadStream, readFileSync, realpathSync, statSync, type Stats } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { isBuiltin } from 'node:module';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { Status, WeftError } from '@weft/common';
import {
  HashCache,
  WORKER_PACKAGES,
  forEachLimit,
  sha256,
  stageIdOf,
  uploadStage,
  type BlobData,
  type HashCacheEntry,
  type ModuleReference,
  type StageFile,
  type StageManifest,
  type StagePlan,
  type StageResult,
  type StageStore,
} from '@weft/stage';
import { jsName, type LocatedFunction } from './locate.js';
import { findModuleReferences } from './source.js';

// The upload half lives in @weft/stage, shared with the directory stager; re-exported as before.
export { uploadStage, type StagePlan, type StageResult } from '@weft/stage';

/** Options of {@link planStage} and {@link stage}. */
export interface StageOptions {
  /** Where hashes of unchanged files are remembered; default {@link HashCache.shared}. */
  readonly hashCache?: HashCache;
  /** Uploads in flight at once; default 8. */
  readonly concurrency?: number;
  /**
   * Packages the worker provides, left out of the stage wherever they are
   * imported; default {@link WORKER_PACKAGES} (weft's own, which the closure
   * worker makes importable from every stage it lays out).
   */
  readonly provided?: readonly string[];
}

/** Files above this size are uploaded as streams rather than read into memory. */
const STREAM_ABOVE = 8 * 1024 * 1024;

function stagingError(message: string): WeftError {
  return new WeftError(Status.FAILED_PRECONDITION, message);
}

/** Where a staged file's content comes from. */
type Source =
  | { kind: 'file'; abs: string }
  | { kind: 'compiled'; abs: string; module: 'esm' | 'cjs' }
  | { kind: 'generated'; content: Buffer };

interface Item {
  source: Source;
  hash: string;
  size: number;
  mode: number;
}

const TS_FILE = /\.[cm]?tsx?$/;
/** Bump when {@link compilerOptions} change, so cached hashes of compiled files are not reused. */
const COMPILE_VERSION = 1;
const PARSED = /\.([cm]?[jt]sx?)$/;

/** Compiler options for TypeScript files found while staging: what `tsx` or `node --experimental-strip-types` would run. */
function compilerOptions(module: 'esm' | 'cjs'): ts.CompilerOptions {
  return {
    target: ts.ScriptTarget.ES2022,
    module: module === 'esm' ? ts.ModuleKind.ESNext : ts.ModuleKind.CommonJS,
    // `./x.ts` specifiers become `./x.js`, which is where the compiled file is staged; `./x.js` stays.
    rewriteRelativeImportExtensions: true,
    jsx: ts.JsxEmit.ReactJSX,
    sourceMap: false,
  };
}

function compile(text: string, fileName: string, module: 'esm' | 'cjs'): Buffer {
  const out = ts.transpileModule(text, {
    fileName,
    compilerOptions: compilerOptions(module),
    reportDiagnostics: false,
  });
  return Buffer.from(out.outputText);
}

/**
 * Works out everything a located function needs to run elsewhere, starting
 * from its module (or, for a closure, the generated module) and following
 * imports:
 *
 * - Relative imports (and `#` subpath imports) are files of the project.
 *   JavaScript files are parsed for their own imports; a TypeScript file
 *   (found directly, or behind a `./x.js` specifier as tsx and NodeNext allow)
 *   is compiled to JavaScript and staged at the `.js` path. The nearest
 *   `package.json` of each is staged too, since it decides whether `.js` is
 *   an ES module.
 * - Bare specifiers are packages, found as Node finds them (`node_modules`
 *   directories up from the importing file), kept at the path where they were
 *   found (a workspace symlink becomes real files there). The whole package
 *   directory is staged except nested `node_modules` and dot directories,
 *   then its `dependencies`, `optionalDependencies` and `peerDependencies`,
 *   resolved from the package directory (missing optional and peer ones are
 *   skipped). Packages are not parsed.
 * - Packages the worker provides (`options.provided`, by default weft's own
 *   packages) and Node built-ins are skipped.
 *
 * Only literal specifiers can be followed: `import(name)` with a computed
 * name, `require.resolve` and files read at run time (`new URL('./x',
 * import.meta.url)`) are not staged unless something else brings them in.
 */
export async function planStage(located: LocatedFunction, options: StageOptions = {}): Promise<StagePlan> {
  const planner = new Planner(options.hashCache ?? HashCache.shared(), new Set(options.provided ?? WORKER_PACKAGES));
  let entry: string;
  let exportName: string;
  let captured: string | undefined;
  if (located.closure) {
    const c = located.closure;
    entry = c.path;
    exportName = 'default';
    captured = c.capturedPath;
    planner.addGenerated(c.capturedPath, c.capturedBytes);
    planner.addGenerated(c.path, Buffer.from(c.code));
    planner.addScope(dirname(c.path));
    await planner.follow(c.path, findModuleReferences(c.code, c.path));
  } else if (located.exportName !== undefined) {
    entry = await planner.addFile(located.file);
    exportName = located.exportName;
  } else {
    throw stagingError(`the located function in ${located.file} has neither an export name nor a closure module`);
  }
  await planner.drain();
  await planner.flushCache();
  return planner.finish(entry, exportName, captured);
}

/**
 * Stages a located function: plans it (see {@link planStage}), asks the
 * store which contents it lacks, uploads those (at most
 * `options.concurrency` at once), then stores the manifest. A project that
 * has not changed since the last call uploads nothing and, thanks to the
 * hash cache, reads no file contents.
 */
export async function stage(
  located: LocatedFunction,
  store: StageStore,
  options: StageOptions = {},
): Promise<StageResult> {
  return uploadStage(await planStage(located, options), store, options);
}

/** Normalised mode bits, as git keeps them: executable or not. */
function modeOf(st: Stats): number {
  return st.mode & 0o111 ? 0o755 : 0o644;
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** The package a bare specifier names: `@scope/name/sub` → `@scope/name`, `name/sub` → `name`. */
export function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? specifier);
}

/** The package directory of a path inside `node_modules`, or undefined. */
function packageDirOf(path: string): string | undefined {
  const parts = path.split(sep);
  const i = parts.lastIndexOf('node_modules');
  if (i < 0 || i + 1 >= parts.length - 1) return undefined;
  const scoped = parts[i + 1]?.startsWith('@') === true;
  const end = i + (scoped ? 3 : 2);
  if (end >= parts.length) return undefined;
  return parts.slice(0, end).join(sep);
}

/** The common ancestor directory of absolute paths. */
function commonDir(paths: readonly string[]): string {
  let common = dirname(paths[0] ?? sep).split(sep);
  for (const p of paths.slice(1)) {
    const parts = dirname(p).split(sep);
    let i = 0;
    while (i < common.length && i < parts.length && common[i] === parts[i]) i++;
    common = common.slice(0, i);
  }
  return common.join(sep) || sep;
}

interface PackageJson {
  name?: unknown;
  type?: unknown;
  imports?: unknown;
  dependencies?: unknown;
  optionalDependencies?: unknown;
  peerDependencies?: unknown;
}

class Planner {
  private readonly items = new Map<string, Item>();
  private readonly pending: { target: string; refs: Promise<readonly ModuleReference[]> }[] = [];
  private readonly packages = new Set<string>();
  private readonly scopes = new Set<string>();
  private readonly scopeCache = new Map<string, string | null>();
  private readonly packageJsons = new Map<string, PackageJson>();
  hashed = 0;

  constructor(
    private readonly cache: HashCache,
    private readonly provided: ReadonlySet<string>,
  ) {}

  addGenerated(target: string, content: Buffer): void {
    this.items.set(target, {
      source: { kind: 'generated', content },
      hash: sha256(content),
      size: content.length,
      mode: 0o644,
    });
  }

  /** Stages a file of the project (or, inside `node_modules`, its package); returns its stage target. */
  async addFile(abs: string): Promise<string> {
    const pkg = packageDirOf(abs);
    if (pkg !== undefined) {
      await this.addPackage(pkg);
      return abs;
    }
    if (TS_FILE.test(abs) && !abs.endsWith('.d.ts')) {
      const target = jsName(abs);
      if (this.items.has(target)) return target;
      const module = this.moduleKind(abs);
      const st = await stat(abs);
      const kind = `ts:${COMPILE_VERSION}:${ts.version}:${module}`;
      let entry = this.cache.get(kind, abs, st);
      if (entry?.imports === undefined) {
        const out = compile(await readFile(abs, 'utf8'), abs, module);
        this.hashed++;
        entry = { hash: sha256(out), size: out.length, imports: findModuleReferences(out.toString(), target) };
        this.cache.set(kind, abs, st, entry);
      }
      this.items.set(target, {
        source: { kind: 'compiled', abs, module },
        hash: entry.hash,
        size: entry.size,
        mode: 0o644,
      });
      this.pending.push({ target, refs: Promise.resolve(entry.imports ?? []) });
      this.addScope(dirname(abs));
      return target;
    }
    if (this.items.has(abs)) return abs;
    const parse = PARSED.test(abs);
    const { entry, st } = await this.hashFile(abs, parse);
    this.items.set(abs, { source: { kind: 'file', abs }, hash: entry.hash, size: entry.size, mode: modeOf(st) });
    if (parse) this.pending.push({ target: abs, refs: Promise.resolve(entry.imports ?? []) });
    this.addScope(dirname(abs));
    return abs;
  }

  /** Follows the module references of a staged module, relative to its target path. */
  async follow(target: string, refs: readonly ModuleReference[]): Promise<void> {
    for (const ref of refs) await this.resolveReference(ref, target);
  }

  /** Follows every staged module's references until nothing new turns up. */
  async drain(): Promise<void> {
    while (this.pending.length > 0) {
      const { target, refs } = this.pending.shift()!;
      await this.follow(target, await refs);
    }
  }

  /** Stages the nearest package.json above a directory, which tells Node how to load the files there. */
  addScope(dir: string): void {
    const pkg = this.scopeOf(dir);
    if (pkg === undefined || this.scopes.has(pkg)) return;
    this.scopes.add(pkg);
    this.pending.push({ target: pkg, refs: this.addPlain(pkg) });
  }

  flushCache(): Promise<void> {
    return this.cache.flush();
  }

  finish(entryAbs: string, exportName: string, capturedAbs: string | undefined): StagePlan {
    const targets = [...this.items.keys()];
    const root = commonDir(targets);
    const rel = (abs: string): string => relative(root, abs).split(sep).join('/');
    const files: StageFile[] = targets
      .map((t) => {
        const item = this.items.get(t)!;
        return { path: rel(t), hash: item.hash, size: item.size, mode: item.mode };
      })
      .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const manifest: StageManifest = {
      version: 1,
      entry: rel(entryAbs),
      exportName,
      ...(capturedAbs === undefined ? {} : { captured: rel(capturedAbs) }),
      files,
    };
    const byHash = new Map<string, Item>();
    for (const item of this.items.values()) byHash.set(item.hash, item);
    return {
      manifest,
      stageId: stageIdOf(manifest),
      root,
      hashed: this.hashed,
      content: (hash) => {
        const item = byHash.get(hash);
        if (item === undefined) return Promise.reject(new Error(`no file with hash ${hash} in this stage`));
        return contentOf(item);
      },
    };
  }

  /** Stages a file as it is, without parsing it; resolves to no references. */
  private async addPlain(abs: string): Promise<readonly ModuleReference[]> {
    const { entry, st } = await this.hashFile(abs, false);
    this.items.set(abs, { source: { kind: 'file', abs }, hash: entry.hash, size: entry.size, mode: modeOf(st) });
    return [];
  }

  private async hashFile(abs: string, parse: boolean): Promise<{ entry: HashCacheEntry; st: Stats }> {
    const st = await stat(abs);
    let entry = this.cache.get('raw', abs, st);
    if (entry === undefined || (parse && entry.imports === undefined)) {
      const content = await readFile(abs);
      this.hashed++;
      entry = {
        hash: sha256(content),
        size: content.length,
        ...(parse ? { imports: findModuleReferences(content.toString('utf8'), abs) } : {}),
      };
      this.cache.set('raw', abs, st, entry);
    }
    return { entry, st };
  }

  private async resolveReference(ref: ModuleReference, importerTarget: string): Promise<void> {
    const spec = ref.specifier;
    const fromDir = dirname(importerTarget);
    if (isBuiltin(spec)) return;
    if (spec.startsWith('./') || spec.startsWith('../') || spec.startsWith('/') || spec.startsWith('file:')) {
      const abs = spec.startsWith('file:') ? fileURLToPath(spec) : resolve(fromDir, spec);
      await this.addFile(this.resolveFile(abs, spec, importerTarget));
      return;
    }
    if (spec.startsWith('#')) {
      await this.addFile(this.resolveSubpathImport(spec, fromDir, importerTarget));
      return;
    }
    const name = packageName(spec);
    if (this.provided.has(name)) return;
    const dir = this.findPackage(name, fromDir);
    if (dir === undefined) {
      throw stagingError(
        `cannot find package "${name}" imported from ${importerTarget} (no node_modules/${name} above it)`,
      );
    }
    await this.addPackage(dir);
  }

  /** The file a relative specifier names, trying TypeScript sources and the extensions `require` adds. */
  private resolveFile(abs: string, spec: string, importer: string): string {
    const candidates = [abs];
    const ext = /\.[cm]?jsx?$/.exec(abs)?.[0];
    if (ext !== undefined) {
      const stem = abs.slice(0, -ext.length);
      const tsExt = ext.replace('js', 'ts');
      candidates.push(stem + tsExt);
      if (ext === '.js') candidates.push(`${stem}.tsx`);
    } else {
      for (const e of ['.js', '.ts', '.tsx', '.mjs', '.mts', '.cjs', '.cts', '.json', '.node'])
        candidates.push(abs + e);
      for (const e of ['.js', '.ts', '.mjs', '.cjs']) candidates.push(join(abs, `index${e}`));
    }
    const found = candidates.find(isFile);
    if (found === undefined) throw stagingError(`cannot find "${spec}" imported from ${importer} (looked for ${abs})`);
    return found;
  }

  /** Resolves a `#name` specifier through the `imports` field of the importer's package.json. */
  private resolveSubpathImport(spec: string, fromDir: string, importer: string): string {
    const pkgPath = this.scopeOf(fromDir);
    const imports = pkgPath === undefined ? undefined : this.readPackageJson(pkgPath).imports;
    const map = typeof imports === 'object' && imports !== null ? (imports as Record<string, unknown>) : {};
    let target = conditionalTarget(map[spec]);
    if (target === undefined) {
      for (const [pattern, value] of Object.entries(map)) {
        const star = pattern.indexOf('*');
        if (star < 0) continue;
        const [prefix, suffix] = [pattern.slice(0, star), pattern.slice(star + 1)];
        if (spec.startsWith(prefix) && spec.endsWith(suffix) && spec.length >= pattern.length - 1) {
          const t = conditionalTarget(value);
          if (t !== undefined) target = t.replace('*', spec.slice(prefix.length, spec.length - suffix.length));
          break;
        }
      }
    }
    if (target === undefined || pkgPath === undefined) {
      throw stagingError(
        `cannot resolve "${spec}" imported from ${importer}: no matching "imports" in its package.json`,
      );
    }
    if (!target.startsWith('./')) {
      throw stagingError(`"${spec}" imported from ${importer} maps to "${target}"; only ./ targets are supported`);
    }
    return this.resolveFile(resolve(dirname(pkgPath), target), spec, importer);
  }

  /** Node's lookup: `node_modules/<name>` in the directory and each one above it. The path is kept as found. */
  private findPackage(name: string, fromDir: string): string | undefined {
    for (let dir = fromDir; ; dir = dirname(dir)) {
      if (basename(dir) !== 'node_modules') {
        const candidate = join(dir, 'node_modules', name);
        if (isDirectory(candidate)) return candidate;
      }
      if (dirname(dir) === dir) return undefined;
    }
  }

  private async addPackage(dir: string): Promise<void> {
    if (this.packages.has(dir)) return;
    this.packages.add(dir);
    await this.addTree(dir, new Set());
    const pkgPath = join(dir, 'package.json');
    if (!isFile(pkgPath)) return;
    const pkg = this.readPackageJson(pkgPath);
    const deps: [string, boolean][] = [];
    for (const [field, optional] of [
      ['dependencies', false],
      ['optionalDependencies', true],
      ['peerDependencies', true],
    ] as const) {
      const value = pkg[field];
      if (typeof value === 'object' && value !== null)
        for (const name of Object.keys(value)) deps.push([name, optional]);
    }
    for (const [name, optional] of deps) {
      if (this.provided.has(name)) continue;
      const found = this.findPackage(name, dir);
      if (found !== undefined) await this.addPackage(found);
      else if (!optional) {
        throw stagingError(
          `package ${dir} depends on "${name}", which is not installed (no node_modules/${name} above it)`,
        );
      }
    }
  }

  /** Every file under a package directory, leaving out nested node_modules and dot directories. */
  private async addTree(dir: string, seen: Set<string>): Promise<void> {
    // Symlinked directories are followed; their real paths guard against loops.
    const real = realpathSync(dir);
    if (seen.has(real)) return;
    seen.add(real);
    const entries = await readdir(dir, { withFileTypes: true });
    const files: string[] = [];
    for (const e of entries) {
      const path = join(dir, e.name);
      const isDir = e.isSymbolicLink() ? isDirectory(path) : e.isDirectory();
      if (isDir) {
        if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
        await this.addTree(path, seen);
      } else if (!this.items.has(path) && (e.isFile() || isFile(path))) {
        files.push(path);
      }
    }
    await forEachLimit(files, 16, async (path) => {
      await this.addPlain(path);
    });
    seen.delete(real);
  }

  /** The nearest package.json at or above a directory. */
  private scopeOf(dir: string): string | undefined {
    const cached = this.scopeCache.get(dir);
    if (cached !== undefined) return cached ?? undefined;
    const candidate = join(dir, 'package.json');
    let found: string | undefined;
    if (isFile(candidate)) found = candidate;
    else if (dirname(dir) !== dir && basename(dir) !== 'node_modules') found = this.scopeOf(dirname(dir));
    this.scopeCache.set(dir, found ?? null);
    return found;
  }

  private readPackageJson(path: string): PackageJson {
    let pkg = this.packageJsons.get(path);
    if (pkg === undefined) {
      try {
        pkg = JSON.parse(readFileSync(path, 'utf8')) as PackageJson;
      } catch (err) {
        throw stagingError(`cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`);
      }
      this.packageJsons.set(path, pkg);
    }
    return pkg;
  }

  /** How Node loads a TypeScript file once compiled: by extension, else by its package.json `type`. */
  private moduleKind(abs: string): 'esm' | 'cjs' {
    if (abs.endsWith('.mts')) return 'esm';
    if (abs.endsWith('.cts')) return 'cjs';
    const scope = this.scopeOf(dirname(abs));
    return scope !== undefined && this.readPackageJson(scope).type === 'module' ? 'esm' : 'cjs';
  }
}

/** The first string target of an `imports`/`exports` value, picking the conditions Node uses for `import`. */
function conditionalTarget(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    for (const v of value) {
      const t = conditionalTarget(v);
      if (t !== undefined) return t;
    }
    return undefined;
  }
  if (typeof value === 'object' && value !== null) {
    const obj = value as Record<string, unknown>;
    for (const condition of ['node', 'import', 'default']) {
      if (condition in obj) {
        const t = conditionalTarget(obj[condition]);
        if (t !== undefined) return t;
      }
    }
  }
  return undefined;
}

async function contentOf(item: Item): Promise<BlobData> {
  const changed = (path: string): WeftError => stagingError(`${path} changed while it was being staged; stage again`);
  switch (item.source.kind) {
    case 'generated':
      return item.source.content;
    case 'compiled': {
      const out = compile(await readFile(item.source.abs, 'utf8'), item.source.abs, item.source.module);
      if (sha256(out) !== item.hash) throw changed(item.source.abs);
      return out;
    }
    case 'file': {
      // Large files are streamed; the store verifies their hash as they arrive.
      if (item.size > STREAM_ABOVE) return createReadStream(item.source.abs);
      const content = await readFile(item.source.abs);
      if (sha256(content) !== item.hash) throw changed(item.source.abs);
      return content;
    }
  }
}
