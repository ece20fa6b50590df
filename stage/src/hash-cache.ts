import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '@weft/common';

/** How a module refers to another: `import`, `export … from`, `import()` or `require()`. */
export type ModuleReferenceKind = 'import' | 'export' | 'dynamic' | 'require';

/** A module specifier written as a literal in a module's source. */
export interface ModuleReference {
  readonly specifier: string;
  readonly kind: ModuleReferenceKind;
}

/** What staging learned about a file, valid while its size and mtime stay the same. */
export interface HashCacheEntry {
  /** sha256 (hex) of the content staged for the file (for TypeScript, of the compiled JavaScript). */
  readonly hash: string;
  /** Size in bytes of that content. */
  readonly size: number;
  /** Module specifiers the content refers to, once parsed (see `findModuleReferences`). */
  readonly imports?: readonly ModuleReference[];
}

/** The file attributes a cache entry is keyed on besides its path. */
export interface FileStamp {
  readonly size: number;
  readonly mtimeMs: number;
}

interface StoredEntry extends HashCacheEntry {
  fileSize: number;
  mtimeMs: number;
}

interface CacheFile {
  version: 1;
  entries: Record<string, StoredEntry>;
}

/** Entries kept on disk at most; the oldest go first. */
const MAX_ENTRIES = 100_000;

/** The default persistent cache directory: `$XDG_CACHE_HOME/weft`, else `~/.cache/weft`. */
export function defaultCacheDir(): string | undefined {
  const xdg = process.env['XDG_CACHE_HOME'];
  if (xdg) return join(xdg, 'weft');
  const home = homedir();
  return home ? join(home, '.cache', 'weft') : undefined;
}

/**
 * Hashes (and parsed imports) of files, keyed by (kind, absolute path, size,
 * mtime), so staging an unchanged project reads no file contents: only stats.
 * It lives in memory, and in `<dir>/stage-hashes.json` when a directory is
 * given so a new process starts warm. That file is read once, on first use,
 * and rewritten atomically by {@link flush}, merged with what other
 * processes wrote meanwhile.
 *
 * Like git's index, it trusts size and mtime: a file rewritten with the same
 * size within the file system's timestamp granularity keeps its old hash.
 */
export class HashCache {
  private static sharedInstance: HashCache | undefined;
  private readonly entries = new Map<string, StoredEntry>();
  private readonly dirty = new Map<string, StoredEntry>();
  private loaded = false;

  /**
   * @param options.dir directory of the persistent cache; `null` keeps the
   *   cache in memory only; default {@link defaultCacheDir}.
   */
  constructor(options: { dir?: string | null } = {}) {
    const dir = options.dir === undefined ? defaultCacheDir() : options.dir;
    this.file = dir === null || dir === undefined ? undefined : join(dir, 'stage-hashes.json');
  }

  /** The persistent cache file, if any. */
  readonly file: string | undefined;

  /** The process-wide cache in the default directory, which staging uses unless told otherwise. */
  static shared(): HashCache {
    HashCache.sharedInstance ??= new HashCache();
    return HashCache.sharedInstance;
  }

  get(kind: string, path: string, stamp: FileStamp): HashCacheEntry | undefined {
    this.load();
    const entry = this.entries.get(key(kind, path));
    if (entry === undefined || entry.fileSize !== stamp.size || entry.mtimeMs !== stamp.mtimeMs) return undefined;
    return entry;
  }

  set(kind: string, path: string, stamp: FileStamp, entry: HashCacheEntry): void {
    this.load();
    const stored: StoredEntry = { ...entry, fileSize: stamp.size, mtimeMs: stamp.mtimeMs };
    const k = key(kind, path);
    this.entries.set(k, stored);
    if (this.file !== undefined) this.dirty.set(k, stored);
  }

  /** Writes new entries to the persistent cache, if there is one. Errors are swallowed: it is only a cache. */
  async flush(): Promise<void> {
    if (this.file === undefined || this.dirty.size === 0) return;
    const updates = new Map(this.dirty);
    this.dirty.clear();
    try {
      const onDisk = await readCacheFile(this.file);
      // Our entries go last, so that trimming drops the oldest first.
      for (const k of updates.keys()) delete onDisk[k];
      const merged: Record<string, StoredEntry> = { ...onDisk, ...Object.fromEntries(updates) };
      const keys = Object.keys(merged);
      for (const k of keys.slice(0, Math.max(0, keys.length - MAX_ENTRIES))) delete merged[k];
      const body: CacheFile = { version: 1, entries: merged };
      await writeFileAtomic(this.file, [Buffer.from(JSON.stringify(body))]);
    } catch {
      // A read-only home or a full disk costs the next process some hashing, nothing more.
    }
  }

  private load(): void {
    if (this.loaded) return;
    this.loaded = true;
    if (this.file === undefined) return;
    try {
      const parsed = parseCacheFile(readFileSync(this.file, 'utf8'));
      for (const [k, v] of Object.entries(parsed)) this.entries.set(k, v);
    } catch {
      // No cache yet, or one we cannot read: start empty.
    }
  }
}

function key(kind: string, path: string): string {
  return `${kind}\0${path}`;
}

async function readCacheFile(file: string): Promise<Record<string, StoredEntry>> {
  try {
    return parseCacheFile(await readFile(file, 'utf8'));
  } catch {
    return {};
  }
}

function parseCacheFile(text: string): Record<string, StoredEntry> {
  const parsed = JSON.parse(text) as Partial<CacheFile>;
  if (parsed.version !== 1 || typeof parsed.entries !== 'object' || parsed.entries === null) return {};
  return parsed.entries;
}
