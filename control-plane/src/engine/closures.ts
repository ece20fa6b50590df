/**
 * Remote closures (Hype's model) on weft's dispatch core: content-addressed
 * stages, client sessions, secrets, volumes and idempotent runs. A run is a
 * unit of work for a built-in `weft-closure` worker pool, one pool per
 * resource shape so the executor accounts each run's requests.
 *
 * On the embedded default a mount is a symlink at the mount path to a
 * directory under the data directory (volumes) or to the secret's files.
 * Read-only is therefore advisory here (Kubernetes enforces it in the
 * cluster), but exclusivity is not: a volume mounted read-write excludes
 * every other mount of it, and one path shows one target at a time.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, isAbsolute, join, normalize, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { BlobStageStore, validateManifest, stageIdOf } from '@weft/stage';
import {
  Status,
  WeftError,
  decode,
  encode,
  failedPrecondition,
  invalid,
  notFound,
  type BlobStore,
  type Logger,
} from '@weft/common';
import type { ClosureEvent, Payload, TaskFailure } from '@weft/proto';
import type { Dispatcher, Outcome, WorkUnit } from '../dispatch/dispatcher.js';
import type { AlgorithmDef } from '../ports/executor.js';
import { parseMemory } from './algorithms.js';

/** Prefix of the per-shape closure pools' algorithm names. */
export const CLOSURE_POOL_PREFIX = 'weft-closure-';

export interface ClosureConfig {
  dataDir: string;
  /** A session without KeepAlive for this long has ended (its client died). */
  sessionTtlMs: number;
  /** Ended runs stay attachable (idempotent Submit) this long. */
  keepRunsMs: number;
  /** Most workers per resource shape. */
  maxWorkers: number;
}

export const DEFAULT_CLOSURE_CONFIG: Omit<ClosureConfig, 'dataDir'> = {
  sessionTtlMs: 30_000,
  keepRunsMs: 10 * 60_000,
  maxWorkers: 32,
};

/** Requests of a run that gives none (HKube's algorithm defaults). */
const DEFAULT_CPU = 0.1;
const DEFAULT_MEMORY = '256Mi';
/** Log bytes kept per run for a client that attaches again. */
const KEPT_LOG_BYTES = 1024 * 1024;

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
const CPU = /^(\d+(?:\.\d+)?|\.\d+)(m?)$/;

interface MountPlan {
  path: string;
  target: string;
  /** Volume name, or undefined for a secret. */
  volume: string | undefined;
  readOnly: boolean;
}

interface VolumeMeta {
  name: string;
  kind: 'transient' | 'persistent';
  storageClass: string;
  size: string;
  sessionId: string;
  created: number;
}

interface Session {
  id: string;
  client: string;
  lastSeen: number;
  ended: boolean;
}

type Sink = (ev: ClosureEvent) => void;

interface Run {
  submissionId: string;
  executionId: string;
  sessionId: string;
  name: string;
  image: string;
  mounts: MountPlan[];
  accepted: ClosureEvent;
  logs: ClosureEvent[];
  logBytes: number;
  final: ClosureEvent | undefined;
  sinks: Set<Sink>;
  cleanup: NodeJS.Timeout | undefined;
  cancelReason?: string;
  /** Bytes written so far per stream: the offset of the next log chunk. */
  written: Record<string, number>;
  timeout: NodeJS.Timeout | undefined;
  timedOut: boolean;
}

/** The validated wire form of a RunEnvironment. */
interface EnvPlan {
  image: string;
  cpu: number;
  memBytes: number;
  gpu: number;
  env: Record<string, string>;
  mounts: MountPlan[];
  /** Volumes to create before the run (transient ones on first use, persistent ones once). */
  create: VolumeMeta[];
}

function str(v: unknown, field: string, fallback?: string): string {
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'string') throw invalid(field, 'must be a string');
  return v;
}

function obj(v: unknown, field: string): Record<string, unknown> {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw invalid(field, 'must be an object');
  return v as Record<string, unknown>;
}

function arr(v: unknown, field: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalid(field, 'must be a list');
  return v;
}

function parseCpu(v: unknown, field: string): number {
  const text = typeof v === 'number' ? String(v) : str(v, field);
  const m = CPU.exec(text.trim());
  if (!m) throw invalid(field, `"${text}" is not a CPU quantity (e.g. 500m, 0.5, 2)`);
  const n = Number(m[1]) / (m[2] === 'm' ? 1000 : 1);
  if (!(n > 0)) throw invalid(field, 'must be positive');
  return n;
}

/** A quantity given as a number or a string; anything else is passed on as "" so the parser rejects it. */
function quantity(v: unknown, fallback: string): string {
  if (v === undefined) return fallback;
  return typeof v === 'number' || typeof v === 'string' ? String(v) : '';
}

function safeName(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

export class ClosureEngine {
  /** Stages, in the blob store beside payloads, so that workers on any machine can lay them out. */
  readonly stages: BlobStageStore;
  /** Stage ids known to be stored: a Submit of one of them needs no lookup in the store. */
  private readonly knownStages = new Set<string>();
  private readonly sessions = new Map<string, Session>();
  private readonly runs = new Map<string, Run>();
  /** Submission ids cancelled before their Submit arrived, with when to forget them. */
  private readonly cancelledEarly = new Map<string, number>();
  private readonly volumes = new Map<string, VolumeMeta>();
  /** Active mounts by path. */
  private readonly mounted = new Map<
    string,
    { target: string; volume: string | undefined; readOnly: boolean; users: number }
  >();
  private readonly pools = new Map<string, AlgorithmDef>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly workerDir: string;
  private readonly volumeDir: string;
  private readonly secretDir: string;

  constructor(
    private readonly deps: {
      dispatcher: Dispatcher;
      blobs: BlobStore;
      config: ClosureConfig;
      log: Logger;
    },
  ) {
    const dataDir = deps.config.dataDir;
    this.stages = new BlobStageStore(deps.blobs);
    this.volumeDir = join(dataDir, 'volumes');
    this.secretDir = join(dataDir, 'secrets');
    mkdirSync(this.volumeDir, { recursive: true });
    mkdirSync(this.secretDir, { recursive: true, mode: 0o700 });
    this.workerDir = dirname(fileURLToPath(import.meta.resolve('@weft/wrapper/builtin/closure')));
    // Volumes outlive the process; transient ones whose client does not come
    // back within the session ttl are removed, as after a client's death.
    for (const name of readdirSync(this.volumeDir)) {
      const file = join(this.volumeDir, name, 'volume.json');
      if (!existsSync(file)) continue;
      try {
        const meta = JSON.parse(readFileSync(file, 'utf8')) as VolumeMeta;
        this.volumes.set(meta.name, meta);
        if (meta.kind === 'transient' && !this.sessions.has(meta.sessionId)) {
          this.sessions.set(meta.sessionId, {
            id: meta.sessionId,
            client: '(before restart)',
            lastSeen: Date.now(),
            ended: false,
          });
        }
      } catch (err) {
        deps.log.warn('unreadable volume metadata', { file, err });
      }
    }
    this.sweeper = setInterval(() => this.sweep(), Math.min(1000, deps.config.sessionTtlMs / 3));
    this.sweeper.unref();
  }

  /** The worker pool definition behind an algorithm name, for the dispatcher. */
  algorithm(name: string): AlgorithmDef | undefined {
    return this.pools.get(name);
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const r of this.runs.values()) if (r.cleanup) clearTimeout(r.cleanup);
  }

  // -------------------------------------------------------------------------
  // Staging

  missing(hashes: string[]): Promise<string[]> {
    hashes.forEach((h, i) => {
      if (!/^[0-9a-f]{64}$/.test(h)) throw invalid(`hashes[${i}]`, `"${h}" is not a sha256 hex digest`);
    });
    return this.stages.missing(hashes);
  }

  async putBlob(hash: string, data: Readable): Promise<void> {
    if (!/^[0-9a-f]{64}$/.test(hash)) throw invalid('hash', `"${hash}" is not a sha256 hex digest`);
    try {
      await this.stages.put(hash, data);
    } catch (err) {
      throw new WeftError(Status.DATA_LOSS, `blob ${hash}: ${(err as Error).message}`);
    }
  }

  async putManifest(stageId: string, json: string): Promise<void> {
    let manifest;
    try {
      manifest = validateManifest(JSON.parse(json));
    } catch (err) {
      throw invalid('manifest_json', (err as Error).message);
    }
    if (stageIdOf(manifest) !== stageId)
      throw invalid('stage_id', `does not match the manifest (${stageIdOf(manifest)})`);
    try {
      await this.stages.putManifest(stageId, manifest);
    } catch (err) {
      throw failedPrecondition(`stage ${stageId}: ${(err as Error).message}`);
    }
    this.knownStages.add(stageId);
  }

  // -------------------------------------------------------------------------
  // Sessions

  openSession(client: string): { sessionId: string; ttlMs: number } {
    const id = `session-${randomUUID()}`;
    this.sessions.set(id, { id, client, lastSeen: Date.now(), ended: false });
    this.deps.log.info('closure session opened', { session: id, client });
    return { sessionId: id, ttlMs: this.deps.config.sessionTtlMs };
  }

  keepAlive(id: string): { sessionId: string; ttlMs: number } {
    const s = this.sessions.get(id);
    if (!s || s.ended) throw notFound(`session ${id} has ended; open a new one`);
    s.lastSeen = Date.now();
    return { sessionId: id, ttlMs: this.deps.config.sessionTtlMs };
  }

  closeSession(id: string): string[] {
    const s = this.sessions.get(id);
    if (!s) throw notFound(`session ${id} not found`);
    return this.endSession(s, 'closed by its client');
  }

  private sweep(): void {
    const now = Date.now();
    for (const s of this.sessions.values()) {
      if (!s.ended && now - s.lastSeen > this.deps.config.sessionTtlMs) {
        this.endSession(s, `no keep-alive for ${Math.round((now - s.lastSeen) / 1000)} s: the client is gone`);
      }
    }
    // Transient volumes of ended sessions that were still mounted.
    for (const v of [...this.volumes.values()]) {
      if (v.kind === 'transient' && this.sessions.get(v.sessionId)?.ended && !this.inUse(v.name)) this.removeVolume(v);
    }
  }

  private endSession(s: Session, why: string): string[] {
    s.ended = true;
    for (const r of this.runs.values()) {
      if (r.sessionId === s.id && !r.final) this.deps.dispatcher.stopJob(r.executionId, `session ended: ${why}`);
    }
    const deleted: string[] = [];
    for (const v of [...this.volumes.values()]) {
      if (v.kind === 'transient' && v.sessionId === s.id && !this.inUse(v.name)) {
        this.removeVolume(v);
        deleted.push(v.name);
      }
    }
    this.deps.log.info('closure session ended', { session: s.id, why, deletedVolumes: deleted });
    // Forget it after a while; until then KeepAlive says it ended.
    setTimeout(() => this.sessions.delete(s.id), 10 * 60_000).unref();
    return deleted;
  }

  // -------------------------------------------------------------------------
  // Secrets

  createSecret(
    name: string,
    files: Record<string, Uint8Array>,
    replace: boolean,
  ): { name: string; files: string[]; created: Date } {
    if (!NAME.test(name) || name.length > 253)
      throw invalid('name', `"${name}" must be a Kubernetes name (lower-case letters, digits, '-', '.')`);
    const keys = Object.keys(files).sort();
    if (keys.length === 0) throw invalid('files', 'at least one file is required');
    for (const k of keys) {
      if (!/^[-._a-zA-Z0-9]+$/.test(k) || k === '.' || k === '..')
        throw invalid(`files[${k}]`, 'a file name is letters, digits, "-", "_" and "."');
    }
    const dir = join(this.secretDir, name);
    if (existsSync(dir) && !replace)
      throw new WeftError(Status.ALREADY_EXISTS, `secret "${name}" already exists (replace it with --replace)`);
    const tmp = `${dir}.tmp-${randomBytes(4).toString('hex')}`;
    mkdirSync(tmp, { mode: 0o700 });
    for (const k of keys) writeFileSync(join(tmp, k), files[k]!, { mode: 0o600 });
    rmSync(dir, { recursive: true, force: true });
    // Renamed into place whole, so a run never sees half a secret.
    renameSync(tmp, dir);
    this.deps.log.info('secret stored', { secret: name, files: keys });
    return { name, files: keys, created: new Date() };
  }

  listSecrets(): { name: string; files: string[]; created: Date }[] {
    return readdirSync(this.secretDir)
      .filter((n) => !n.includes('.tmp-'))
      .sort()
      .map((name) => ({
        name,
        files: readdirSync(join(this.secretDir, name)).sort(),
        created: lstatSync(join(this.secretDir, name)).mtime,
      }));
  }

  deleteSecret(name: string): { name: string; files: string[]; created: Date } {
    const dir = join(this.secretDir, name);
    if (!NAME.test(name) || !existsSync(dir)) throw notFound(`secret "${name}" not found`);
    const info = { name, files: readdirSync(dir).sort(), created: lstatSync(dir).mtime };
    rmSync(dir, { recursive: true, force: true });
    return info;
  }

  // -------------------------------------------------------------------------
  // Volumes

  private inUse(volume: string): number {
    let n = 0;
    for (const m of this.mounted.values()) if (m.volume === volume) n += m.users;
    return n;
  }

  listVolumes(): (VolumeMeta & { mountedBy: number })[] {
    return [...this.volumes.values()]
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .map((v) => ({ ...v, mountedBy: this.inUse(v.name) }));
  }

  deleteVolume(name: string): VolumeMeta & { mountedBy: number } {
    const v = this.volumes.get(name);
    if (!v) throw notFound(`volume "${name}" not found`);
    if (this.inUse(name) > 0)
      throw failedPrecondition(`volume "${name}" is mounted by ${this.inUse(name)} running closure(s)`);
    this.removeVolume(v);
    return { ...v, mountedBy: 0 };
  }

  private volumeData(name: string): string {
    return join(this.volumeDir, name, 'data');
  }

  private removeVolume(v: VolumeMeta): void {
    rmSync(join(this.volumeDir, v.name), { recursive: true, force: true });
    this.volumes.delete(v.name);
    this.deps.log.info('volume deleted', { volume: v.name, kind: v.kind });
  }

  private ensureVolume(v: VolumeMeta): void {
    if (this.volumes.has(v.name)) return;
    mkdirSync(this.volumeData(v.name), { recursive: true });
    writeFileSync(join(this.volumeDir, v.name, 'volume.json'), JSON.stringify(v));
    this.volumes.set(v.name, v);
    this.deps.log.info('volume created', { volume: v.name, kind: v.kind, storageClass: v.storageClass, size: v.size });
  }

  // -------------------------------------------------------------------------
  // Environments

  /** Validates the wire form of a RunEnvironment, naming the field of any error; checks nothing is in conflict. */
  private plan(spec: Record<string, unknown>, sessionId: string): EnvPlan {
    const image = str(spec['image'], 'environment.image', '');
    const requests = obj(spec['requests'], 'environment.requests');
    const cpu = requests['cpu'] === undefined ? DEFAULT_CPU : parseCpu(requests['cpu'], 'environment.requests.cpu');
    const memBytes = parseMemory(quantity(requests['memory'], DEFAULT_MEMORY), 'environment.requests.memory');
    const gpu = requests['gpu'] === undefined ? 0 : Number(requests['gpu']);
    if (!Number.isInteger(gpu) || gpu < 0) throw invalid('environment.requests.gpu', 'must be a whole number');
    // Limits are recorded for the cluster; local processes cannot be held to them.
    const limits = obj(spec['limits'], 'environment.limits');
    if (limits['cpu'] !== undefined) parseCpu(limits['cpu'], 'environment.limits.cpu');
    if (limits['memory'] !== undefined) parseMemory(quantity(limits['memory'], ''), 'environment.limits.memory');
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(obj(spec['env'], 'environment.env'))) {
      if (!ENV_NAME.test(k)) throw invalid(`environment.env.${k}`, 'is not a valid variable name');
      env[k] = str(v, `environment.env.${k}`);
    }
    const mounts: MountPlan[] = [];
    const create: VolumeMeta[] = [];
    const paths = new Set<string>();
    const checkPath = (p: unknown, field: string): string => {
      const path = str(p, field);
      if (!isAbsolute(path) || normalize(path) !== path || path === '/')
        throw invalid(field, `"${path}" must be a normalised absolute path`);
      if (paths.has(path)) throw invalid(field, `"${path}" is mounted twice`);
      paths.add(path);
      return path;
    };
    arr(spec['secrets'], 'environment.secrets').forEach((raw, i) => {
      const s = obj(raw, `environment.secrets[${i}]`);
      const name = str(s['name'], `environment.secrets[${i}].name`);
      const dir = join(this.secretDir, name);
      if (!NAME.test(name) || !existsSync(dir)) {
        throw invalid(
          `environment.secrets[${i}].name`,
          `secret "${name}" does not exist (create it with: weft secret create ${name} --from-file FILE)`,
        );
      }
      mounts.push({
        path: checkPath(s['mountPath'], `environment.secrets[${i}].mountPath`),
        target: dir,
        volume: undefined,
        readOnly: true,
      });
    });
    arr(spec['mounts'], 'environment.mounts').forEach((raw, i) => {
      const field = `environment.mounts[${i}]`;
      const m = obj(raw, field);
      const path = checkPath(m['mountPath'], `${field}.mountPath`);
      const readOnly = m['readOnly'] === true;
      const v = obj(m['volume'], `${field}.volume`);
      const kind = str(v['kind'], `${field}.volume.kind`);
      const storageClass = str(v['storageClass'], `${field}.volume.storageClass`);
      const size = str(v['size'], `${field}.volume.size`);
      parseMemory(size, `${field}.volume.size`);
      let meta: VolumeMeta;
      if (kind === 'transient') {
        const name = str(v['name'], `${field}.volume.name`);
        if (!/^weft-transient-[a-z0-9]{4,32}$/.test(name))
          throw invalid(`${field}.volume.name`, `"${name}" is not a transient volume name`);
        if (!sessionId) throw invalid('session_id', 'a transient volume needs a session (OpenSession)');
        const existing = this.volumes.get(name);
        if (existing && existing.sessionId !== sessionId) {
          throw failedPrecondition(`${field}: transient volume ${name} belongs to another client's session`);
        }
        meta = { name, kind: 'transient', storageClass, size, sessionId, created: Date.now() };
      } else if (kind === 'persistent') {
        const base = str(v['name'], `${field}.volume.name`);
        const name = safeName(`${base}-${storageClass}-${size}`);
        if (!name) throw invalid(`${field}.volume.name`, 'is required');
        meta = { name, kind: 'persistent', storageClass, size, sessionId: '', created: Date.now() };
      } else {
        throw invalid(`${field}.volume.kind`, `"${kind}" is not transient or persistent`);
      }
      // Exclusivity: read-write excludes every other mount of the volume.
      for (const [p, cur] of this.mounted) {
        if (cur.volume !== meta.name) continue;
        if (!readOnly || !cur.readOnly) {
          throw failedPrecondition(
            `${field}: volume ${meta.name} is mounted ${cur.readOnly ? 'read-only' : 'read-write'} at ${p} by a running closure; ` +
              `a read-write mount must be the only one`,
          );
        }
      }
      for (const other of mounts) {
        if (other.volume === meta.name && (!readOnly || !other.readOnly)) {
          throw invalid(field, `volume ${meta.name} is mounted twice, once read-write`);
        }
      }
      create.push(meta);
      mounts.push({ path, target: this.volumeData(meta.name), volume: meta.name, readOnly });
    });
    for (const m of mounts) {
      const cur = this.mounted.get(m.path);
      if (cur && cur.target !== m.target) {
        throw failedPrecondition(
          `mount path ${m.path} shows another volume or secret to a running closure (one target per path on the embedded default)`,
        );
      }
      if (!cur) this.checkFreePath(m.path);
    }
    return { image, cpu, memBytes, gpu, env, mounts, create };
  }

  /** A mount path must be free or a leftover weft mount (a symlink into the data directory). */
  private checkFreePath(path: string): void {
    let st;
    try {
      st = lstatSync(path);
    } catch {
      return;
    }
    if (
      st.isSymbolicLink() &&
      resolve(dirname(path), readlinkSync(path)).startsWith(resolve(this.deps.config.dataDir) + '/')
    )
      return;
    throw failedPrecondition(`mount path ${path} already exists and is not a weft mount`);
  }

  private mount(plan: MountPlan[]): void {
    for (const m of plan) {
      const cur = this.mounted.get(m.path);
      if (cur) {
        cur.users++;
        cur.readOnly &&= m.readOnly;
        continue;
      }
      mkdirSync(dirname(m.path), { recursive: true });
      try {
        unlinkSync(m.path);
      } catch {
        // Not there: the usual case.
      }
      symlinkSync(m.target, m.path);
      this.mounted.set(m.path, { target: m.target, volume: m.volume, readOnly: m.readOnly, users: 1 });
    }
  }

  private unmount(plan: MountPlan[]): void {
    for (const m of plan) {
      const cur = this.mounted.get(m.path);
      if (!cur) continue;
      if (--cur.users > 0) continue;
      this.mounted.delete(m.path);
      try {
        unlinkSync(m.path);
      } catch {
        // Already gone.
      }
    }
  }

  private pool(cpu: number, memBytes: number, gpu: number): AlgorithmDef {
    const name = `${CLOSURE_POOL_PREFIX}${Math.round(cpu * 1000)}m-${Math.round(memBytes / 2 ** 20)}mi-${gpu}g`;
    let def = this.pools.get(name);
    if (!def) {
      def = {
        name,
        env: 'nodejs',
        codePath: this.workerDir,
        codeStage: '',
        entryPoint: 'closure.js',
        image: '',
        cpu,
        memBytes,
        gpu,
        minHotWorkers: 0,
        maxWorkers: this.deps.config.maxWorkers,
        env_vars: {},
      };
      this.pools.set(name, def);
    }
    return def;
  }

  // -------------------------------------------------------------------------
  // Runs

  /**
   * Starts a run, or attaches to the run an earlier Submit with the same id
   * started. Events go to sink until the run ends or detach is called.
   * Everything that can be refused is refused here, before anything runs.
   */
  async submit(
    req: {
      submissionId: string;
      stageId: string;
      args: Buffer;
      environment: Record<string, unknown>;
      timeoutMs: number;
      sessionId: string;
      streamLogs: boolean;
      name: string;
    },
    sink: Sink,
  ): Promise<{ detach: () => void }> {
    if (!/^[-_A-Za-z0-9]{8,128}$/.test(req.submissionId))
      throw invalid('submission_id', 'must be 8-128 letters, digits, "-" or "_" (a UUID)');
    const earlier = this.earlierRun(req.submissionId, sink);
    if (earlier) return earlier;
    if (!/^[0-9a-f]{64}$/.test(req.stageId)) throw invalid('stage_id', `"${req.stageId}" is not a stage id`);
    if (!this.knownStages.has(req.stageId)) {
      if (!(await this.stages.hasManifest(req.stageId))) {
        throw failedPrecondition(`stage ${req.stageId} has not been uploaded (PutManifest)`);
      }
      this.knownStages.add(req.stageId);
      // A Submit with the same id may have started the run while the store answered.
      const meanwhile = this.earlierRun(req.submissionId, sink);
      if (meanwhile) return meanwhile;
    }
    if (req.sessionId) {
      const s = this.sessions.get(req.sessionId);
      if (!s || s.ended) throw failedPrecondition(`session ${req.sessionId} has ended; open a new one`);
      s.lastSeen = Date.now();
    }
    const plan = this.plan(req.environment, req.sessionId);
    for (const v of plan.create) this.ensureVolume(v);
    this.mount(plan.mounts);
    const executionId = `weft-closure-${randomUUID()}`;
    const pool = this.pool(plan.cpu, plan.memBytes, plan.gpu);
    const run: Run = {
      submissionId: req.submissionId,
      executionId,
      sessionId: req.sessionId,
      name: req.name,
      image: plan.image,
      mounts: plan.mounts,
      accepted: {
        event: { $case: 'accepted', value: { submissionId: req.submissionId, executionId, attached: false } },
      },
      logs: [],
      logBytes: 0,
      final: undefined,
      sinks: new Set([sink]),
      cleanup: undefined,
      written: {},
      timeout: undefined,
      timedOut: false,
    };
    this.runs.set(req.submissionId, run);
    sink(run.accepted);
    const unit: WorkUnit = {
      taskId: executionId,
      jobId: executionId,
      algorithmName: pool.name,
      nodeName: req.name || 'closure',
      pipelineName: 'closures',
      batchIndex: -1,
      input: encode([{ stageId: req.stageId, args: req.args }]),
      inputKeys: [],
      outputKey: `closures/${executionId}`,
      savePaths: [],
      priority: 3,
      kind: 'closure',
      // A closure runs once; retrying is the caller's decision (Hype re-ran work on client errors).
      retry: { policy: 'Never', limit: 0 },
      env: { ...plan.env, WEFT_EXECUTION_ID: executionId, HYPE_EXECUTION_ID: executionId, WEFT_IMAGE: plan.image },
      streamLogs: req.streamLogs,
    };
    this.deps.log.info('closure submitted', {
      execution: executionId,
      name: req.name,
      image: plan.image || '(default)',
      pool: pool.name,
      mounts: plan.mounts.map((m) => `${m.path}${m.readOnly ? ':ro' : ''}`),
    });
    if (req.timeoutMs > 0) {
      // Counted from acceptance, time in the queue included, as the caller sees it.
      run.timeout = setTimeout(() => {
        if (run.final) return;
        run.timedOut = true;
        this.deps.dispatcher.stopJob(executionId, `timeout of ${req.timeoutMs} ms`);
      }, req.timeoutMs);
    }
    this.deps.dispatcher.submit(unit, {
      onLog: (stream, data) => {
        const offset = run.written[stream] ?? 0;
        run.written[stream] = offset + data.byteLength;
        this.emit(run, { event: { $case: 'log', value: { stream, data, offset } } });
      },
      onDone: (outcome) => {
        this.finish(run, outcome, req.timeoutMs).catch((err: unknown) =>
          this.deps.log.error('closure result lost', { err, execution: executionId }),
        );
      },
    });
    return { detach: () => run.sinks.delete(sink) };
  }

  /** Attaches to the run an earlier Submit with this id started (or cancelled), if any. */
  private earlierRun(submissionId: string, sink: Sink): { detach: () => void } | undefined {
    const existing = this.runs.get(submissionId);
    if (existing) return this.attach(existing, sink);
    if (this.cancelledEarly.has(submissionId)) return this.attach(this.cancelledRun(submissionId), sink);
    return undefined;
  }

  private attach(run: Run, sink: Sink): { detach: () => void } {
    sink({
      event: {
        $case: 'accepted',
        value: { submissionId: run.submissionId, executionId: run.executionId, attached: true },
      },
    });
    for (const l of run.logs) sink(l);
    if (run.final) {
      sink(run.final);
      return { detach: () => undefined };
    }
    run.sinks.add(sink);
    return { detach: () => run.sinks.delete(sink) };
  }

  private emit(run: Run, ev: ClosureEvent): void {
    if (ev.event?.$case === 'log') {
      run.logBytes += ev.event.value.data.byteLength;
      // Kept for a client that attaches again; the oldest go first past the cap.
      run.logs.push(ev);
      while (run.logBytes > KEPT_LOG_BYTES && run.logs.length > 1) {
        const old = run.logs.shift();
        if (old?.event?.$case === 'log') run.logBytes -= old.event.value.data.byteLength;
      }
    }
    for (const s of run.sinks) s(ev);
  }

  private async resultBytes(p: Payload): Promise<Buffer> {
    const bytes =
      p.kind?.$case === 'inline'
        ? p.kind.value
        : p.kind?.$case === 'ref'
          ? await this.deps.blobs.get(p.kind.value.key)
          : undefined;
    if (!bytes) throw new Error('empty result');
    const v = decode(bytes);
    if (!(v instanceof Uint8Array)) throw new Error('the worker did not return an encoded value');
    return Buffer.from(v);
  }

  private async finish(run: Run, outcome: Outcome, timeoutMs: number): Promise<void> {
    if (run.timeout) clearTimeout(run.timeout);
    this.unmount(run.mounts);
    let final: ClosureEvent;
    if (run.timedOut) {
      const message = `the closure ran longer than its timeout of ${timeoutMs} ms and was stopped`;
      final = { event: { $case: 'failure', value: { type: 'TimeoutError', message, stack: '', crash: false } } };
    } else if (outcome.status === 'succeeded') {
      final = { event: { $case: 'result', value: { value: await this.resultBytes(outcome.result) } } };
    } else if (outcome.status === 'failed') {
      const f: TaskFailure = outcome.failure;
      const failure: TaskFailure =
        f.type === 'Timeout'
          ? {
              type: 'TimeoutError',
              message: `the closure ran longer than its timeout of ${timeoutMs} ms and was stopped`,
              stack: f.stack,
              crash: false,
            }
          : f;
      final = { event: { $case: 'failure', value: failure } };
    } else {
      final = {
        event: {
          $case: 'failure',
          value: {
            type: 'AbortError',
            message: run.cancelReason ?? 'the closure was cancelled',
            stack: '',
            crash: false,
          },
        },
      };
    }
    run.final = final;
    for (const s of run.sinks) s(final);
    run.sinks.clear();
    this.deps.log.info('closure ended', { execution: run.executionId, outcome: outcome.status });
    run.cleanup = setTimeout(() => this.runs.delete(run.submissionId), this.deps.config.keepRunsMs);
    run.cleanup.unref();
    // A transient volume whose session ended while this run had it mounted.
    this.sweep();
  }

  /** A run that was cancelled before it was submitted: attaching to it gives AbortError. */
  private cancelledRun(submissionId: string): Run {
    const run: Run = {
      submissionId,
      executionId: '',
      sessionId: '',
      name: '',
      image: '',
      mounts: [],
      accepted: { event: { $case: 'accepted', value: { submissionId, executionId: '', attached: false } } },
      logs: [],
      logBytes: 0,
      final: {
        event: {
          $case: 'failure',
          value: { type: 'AbortError', message: 'cancelled before it started', stack: '', crash: false },
        },
      },
      sinks: new Set(),
      cleanup: undefined,
      written: {},
      timeout: undefined,
      timedOut: false,
    };
    this.runs.set(submissionId, run);
    run.cleanup = setTimeout(() => this.runs.delete(submissionId), this.deps.config.keepRunsMs);
    run.cleanup.unref();
    return run;
  }

  /**
   * Cancels a run; false when it had already ended. An id not seen yet is
   * remembered, so a Submit that arrives after its Cancel (the client
   * aborted while its Submit was in flight) does not run.
   */
  cancel(submissionId: string, reason: string): boolean {
    const run = this.runs.get(submissionId);
    if (!run) {
      if (!/^[-_A-Za-z0-9]{8,128}$/.test(submissionId)) throw invalid('submission_id', 'is not a submission id');
      const now = Date.now();
      for (const [id, until] of this.cancelledEarly) if (until < now) this.cancelledEarly.delete(id);
      this.cancelledEarly.set(submissionId, now + this.deps.config.keepRunsMs);
      return true;
    }
    if (run.final) return false;
    run.cancelReason = reason || 'cancelled by the client';
    this.deps.dispatcher.stopJob(run.executionId, run.cancelReason);
    return true;
  }
}
