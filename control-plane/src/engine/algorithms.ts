import { isAbsolute } from 'node:path';
import { failedPrecondition, invalid, type BlobStore } from '@weft/common';
import { BlobStageStore } from '@weft/stage';
import { AlgorithmSpec } from '@weft/proto';
import type { AlgorithmDef } from '../ports/executor.js';
import type { StateStore } from '../ports/state-store.js';

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const QUANTITY = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T|k)?$/;
const UNITS: Record<string, number> = {
  '': 1,
  k: 1e3,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
};

/** HKube's defaults: cpu 0.1, memory 256Mi. */
const DEFAULT_CPU = 0.1;
const DEFAULT_MEM = '256Mi';

/** Parses a Kubernetes memory quantity ("256Mi", "1G", "1048576") into bytes. */
export function parseMemory(q: string, field: string): number {
  const m = QUANTITY.exec(q.trim());
  if (!m) throw invalid(field, `"${q}" is not a memory quantity (e.g. 256Mi, 1Gi)`);
  return Math.round(Number(m[1]) * UNITS[m[2] ?? '']!);
}

/**
 * Validates an algorithm spec and turns it into what the executor needs.
 * HKube's top-level cpu/mem/gpu fold into resources.
 */
export function normalizeAlgorithm(spec: AlgorithmSpec): AlgorithmDef {
  if (!spec.name) throw invalid('name', 'is required');
  if (!NAME.test(spec.name) || spec.name.length > 63) {
    throw invalid(
      'name',
      `"${spec.name}" must be lower-case letters, digits and '-' (at most 63), as Kubernetes names`,
    );
  }
  if (spec.name === 'weft-command') {
    throw invalid('name', '"weft-command" is reserved for the built-in runner of workflow commands');
  }
  const env = spec.env || 'nodejs';
  if (env !== 'nodejs' && env !== 'python') throw invalid('env', `"${env}" is not supported (nodejs, python)`);
  const cpu = spec.resources?.cpu || spec.cpu || DEFAULT_CPU;
  if (!(cpu > 0)) throw invalid('resources.cpu', 'must be positive');
  const memField = spec.resources?.mem ? 'resources.mem' : 'mem';
  const memBytes = parseMemory(spec.resources?.mem || spec.mem || DEFAULT_MEM, memField);
  const gpu = spec.resources?.gpu || spec.gpu || 0;
  if (gpu < 0) throw invalid('resources.gpu', 'must not be negative');
  if (spec.minHotWorkers < 0) throw invalid('minHotWorkers', 'must not be negative');
  if (spec.maxWorkers < 0) throw invalid('maxWorkers', 'must not be negative');
  if (spec.maxWorkers > 0 && spec.minHotWorkers > spec.maxWorkers) {
    throw invalid('minHotWorkers', `(${spec.minHotWorkers}) exceeds maxWorkers (${spec.maxWorkers})`);
  }
  const codeStage = spec.code?.stage ?? '';
  if (codeStage && !/^[0-9a-f]{64}$/.test(codeStage)) {
    throw invalid(
      'code.stage',
      `"${codeStage}" is not a stage id (weft algorithm apply uploads code.path and sets it)`,
    );
  }
  // With a stage, the path is only where the code was uploaded from, on the applying machine.
  const codePath = codeStage ? '' : (spec.code?.path ?? '');
  if (!codeStage && !codePath && !spec.algorithmImage) {
    throw invalid('code.path', 'is required (or algorithmImage for the cluster)');
  }
  if (codePath && !isAbsolute(codePath)) {
    throw invalid('code.path', `"${codePath}" must be absolute (the CLI resolves paths relative to the spec file)`);
  }
  if (/\.(tar\.gz|tgz)$/.test(codePath)) {
    throw invalid(
      'code.path',
      `"${codePath}" is an archive: apply it with \`weft algorithm apply\`, which unpacks and uploads it ` +
        "(without code.stage, code.path is a directory on the worker's machine)",
    );
  }
  return {
    name: spec.name,
    env,
    codePath,
    codeStage,
    entryPoint: spec.code?.entryPoint || (env === 'python' ? 'main.py' : 'index.js'),
    image: spec.algorithmImage,
    cpu,
    memBytes,
    gpu,
    minHotWorkers: spec.minHotWorkers,
    maxWorkers: spec.maxWorkers,
    env_vars: { ...spec.algorithmEnv },
  };
}

/**
 * The registered algorithms, kept in memory for the dispatcher (which needs
 * them synchronously) and persisted in the state store. Code comes either
 * from a stage in the blob store (`code.stage`, which `weft algorithm apply`
 * uploads) or from a directory on the worker's machine; neither is read
 * here, so a control plane need not share a disk with the code.
 */
export class AlgorithmRegistry {
  private readonly defs = new Map<string, AlgorithmDef>();
  private readonly stages: BlobStageStore;

  constructor(
    private readonly store: StateStore,
    /** Where algorithm code is staged: an applied `code.stage` must be there. */
    blobs: BlobStore,
  ) {
    this.stages = new BlobStageStore(blobs);
  }

  async load(): Promise<void> {
    for (const rec of await this.store.listAlgorithms()) {
      // Stored in the message's JSON form, which omits default values.
      const spec = AlgorithmSpec.fromJSON(rec.spec);
      try {
        this.defs.set(rec.name, normalizeAlgorithm(spec));
      } catch {
        // Applied under older rules (an archive path, say); applying it again reports why.
      }
    }
  }

  get(name: string): AlgorithmDef | undefined {
    return this.defs.get(name);
  }

  has(name: string): boolean {
    return this.defs.has(name);
  }

  async apply(spec: AlgorithmSpec): Promise<AlgorithmDef> {
    const def = normalizeAlgorithm(spec);
    if (def.codeStage && !(await this.stages.hasManifest(def.codeStage))) {
      throw failedPrecondition(
        `code.stage: stage ${def.codeStage} has not been uploaded (PutManifest after its files, as weft algorithm apply does)`,
      );
    }
    await this.store.putAlgorithm(spec.name, AlgorithmSpec.toJSON(spec) as Record<string, unknown>);
    this.defs.set(spec.name, def);
    return def;
  }

  async delete(name: string): Promise<boolean> {
    this.defs.delete(name);
    return this.store.deleteAlgorithm(name);
  }
}
