import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { invalid } from '@weft/common';

/** Resources as given to {@link RunEnvironment.withRequest} and {@link RunEnvironment.withLimit}. */
export interface Resources {
  /** CPU cores: a number (`0.5`, `2`) or a Kubernetes quantity (`"200m"`, `"1.5"`). */
  readonly cpu?: number | string;
  /** Memory: bytes as a number, or a Kubernetes quantity (`"256Mi"`, `"1G"`). */
  readonly memory?: number | string;
  /** Whole GPUs. */
  readonly gpu?: number;
}

/** Resources in the wire form: quantities as canonical Kubernetes strings. */
export interface ResourceSpec {
  /** e.g. `"500m"`, `"2"`. */
  cpu?: string;
  /** e.g. `"256Mi"`, or a byte count such as `"1048576"`. */
  memory?: string;
  gpu?: number;
}

/** A volume in the wire form. */
export type VolumeSpec =
  | {
      /**
       * Belongs to the client's session: created on first use, shared by
       * every run of the session that mounts the same `name`, deleted when
       * the session ends.
       */
      kind: 'transient';
      /** `weft-transient-<8 hex digits>`, chosen by the client, stable for the volume's life. */
      name: string;
      storageClass: string;
      size: string;
    }
  | {
      /** Created on first use under `name` and kept, so later runs see what earlier ones wrote. */
      kind: 'persistent';
      name: string;
      storageClass: string;
      size: string;
    };

/**
 * The wire form of a {@link RunEnvironment}, plain JSON, as the server
 * receives it:
 *
 * ```json
 * {
 *   "image": "registry/team/image:tag",
 *   "requests": { "cpu": "500m", "memory": "256Mi" },
 *   "limits": { "memory": "1Gi", "gpu": 1 },
 *   "env": { "MODE": "fast" },
 *   "secrets": [{ "name": "db-creds", "mountPath": "/etc/db" }],
 *   "mounts": [{ "mountPath": "/data", "readOnly": false,
 *                "volume": { "kind": "transient", "name": "weft-transient-1f2e3d4c",
 *                            "storageClass": "ssd", "size": "10Gi" } }],
 *   "podTemplate": { "apiVersion": "v1", "kind": "Pod", "spec": { "nodeSelector": { "pool": "gpu" } } }
 * }
 * ```
 *
 * `image` is absent for the server's default image. `env` keys are sorted.
 * `podTemplate` is present only for an environment read from pod YAML: the
 * document as given, minus what was lifted out of container `weft-run`
 * (cpu, memory and `nvidia.com/gpu` requests and limits, and `env` entries
 * with a plain `value`), so that the server can apply the rest (node
 * selectors, tolerations, other resources, `valueFrom` variables).
 */
export interface RunEnvironmentSpec {
  image?: string;
  requests: ResourceSpec;
  limits: ResourceSpec;
  env: Record<string, string>;
  secrets: { name: string; mountPath: string }[];
  mounts: { mountPath: string; readOnly: boolean; volume: VolumeSpec }[];
  podTemplate?: Record<string, unknown>;
}

/** The container in pod YAML that the closure runs in. */
export const RUN_CONTAINER = 'weft-run';

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
const CPU = /^(\d+(?:\.\d+)?|\.\d+)(m?)$/;
const MEMORY = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/;
const MEMORY_FACTOR: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

function checkDnsName(field: string, value: unknown, what: string): string {
  if (typeof value !== 'string' || value.length > 253 || !DNS_SUBDOMAIN.test(value)) {
    throw invalid(
      field,
      `${JSON.stringify(value)} is not a valid ${what} (lowercase letters, digits, "-" and ".", starting and ending with a letter or digit, at most 253 characters)`,
    );
  }
  return value;
}

/** Canonical CPU quantity: whole cores as `"2"`, anything else in millicores (`"500m"`). */
function cpuQuantity(field: string, value: unknown): string {
  let millis: number | undefined;
  if (typeof value === 'number' && Number.isFinite(value)) {
    millis = value * 1000;
  } else if (typeof value === 'string') {
    const m = CPU.exec(value);
    if (m) millis = m[2] === 'm' ? Number(m[1]) : Number(m[1]) * 1000;
  }
  if (millis === undefined) {
    throw invalid(field, `${JSON.stringify(value)} is not a CPU quantity (e.g. "200m", "0.5" or 2)`);
  }
  const rounded = Math.round(millis);
  if (Math.abs(millis - rounded) > 1e-6)
    throw invalid(field, `${JSON.stringify(value)} is finer than 1m (a thousandth of a core)`);
  if (rounded <= 0) throw invalid(field, `must be more than 0, got ${JSON.stringify(value)}`);
  return rounded % 1000 === 0 ? String(rounded / 1000) : `${rounded}m`;
}

function memoryQuantity(field: string, value: unknown): string {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value <= 0)
      throw invalid(field, `must be a positive whole number of bytes, got ${value}`);
    return String(value);
  }
  if (typeof value !== 'string' || !MEMORY.test(value)) {
    throw invalid(field, `${JSON.stringify(value)} is not a memory quantity (e.g. "256Mi", "1Gi", "500M" or bytes)`);
  }
  if (bytes(value) <= 0) throw invalid(field, `must be more than 0, got ${JSON.stringify(value)}`);
  return value;
}

function bytes(quantity: string): number {
  const m = MEMORY.exec(quantity)!;
  return Number(m[1]) * (MEMORY_FACTOR[m[2] ?? ''] ?? 1);
}

function millicores(quantity: string): number {
  return quantity.endsWith('m') ? Number(quantity.slice(0, -1)) : Number(quantity) * 1000;
}

function resourceSpec(field: string, value: unknown): ResourceSpec {
  if (typeof value !== 'object' || value === null) throw invalid(field, 'must be an object like { cpu, memory, gpu }');
  const out: ResourceSpec = {};
  for (const [key, v] of Object.entries(value)) {
    if (v === undefined) continue;
    if (key === 'cpu') out.cpu = cpuQuantity(`${field}.cpu`, v);
    else if (key === 'memory') out.memory = memoryQuantity(`${field}.memory`, v);
    else if (key === 'gpu') {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
        throw invalid(`${field}.gpu`, `must be a whole number of GPUs, got ${JSON.stringify(v)}`);
      }
      out.gpu = v;
    } else {
      throw invalid(`${field}.${key}`, 'unknown resource (expected cpu, memory or gpu)');
    }
  }
  return out;
}

function mountPath(field: string, value: unknown): string {
  if (typeof value !== 'string' || !value.startsWith('/')) {
    throw invalid(field, `${JSON.stringify(value)} is not an absolute path`);
  }
  if (value === '/' || posix.normalize(value) !== value || value.endsWith('/')) {
    throw invalid(field, `${JSON.stringify(value)} must be a normalised path below / (no "..", "." or trailing "/")`);
  }
  return value;
}

/** A volume to mount into the run; mount it with {@link Volume.readOnly} or {@link Volume.readWrite}. */
export abstract class Volume {
  /** Mounts the volume read-only at an absolute path. */
  readOnly(path: string): VolumeMount {
    return new VolumeMount(this, mountPath('mount.mountPath', path), true);
  }

  /** Mounts the volume read-write at an absolute path. */
  readWrite(path: string): VolumeMount {
    return new VolumeMount(this, mountPath('mount.mountPath', path), false);
  }

  /** The wire form. */
  abstract toSpec(): VolumeSpec;
}

/**
 * A scratch volume of the client's session (Hype's `VolumeRequest`): created
 * on the first run that mounts it and deleted when the session ends (the
 * Submitter is closed, the script exits, or the server hears no KeepAlive).
 *
 * The object is the volume's identity: it gets a random name
 * (`weft-transient-<8 hex digits>`) when it is made, so every run that
 * mounts the same `TransientVolume` sees the same volume, e.g. one run
 * writing it read-write and then many reading it read-only. Two
 * `TransientVolume`s are two volumes, whatever their size and class.
 */
export class TransientVolume extends Volume {
  /** `weft-transient-<8 hex digits>`, unique to this object. */
  readonly name: string;
  readonly storageClass: string;
  readonly size: string;

  constructor(storageClass: string, size: string | number) {
    super();
    this.storageClass = checkDnsName('volume.storageClass', storageClass, 'storage class name');
    this.size = memoryQuantity('volume.size', size);
    this.name = `weft-transient-${randomBytes(4).toString('hex')}`;
    Object.freeze(this);
  }

  toSpec(): VolumeSpec {
    return { kind: 'transient', name: this.name, storageClass: this.storageClass, size: this.size };
  }
}

/** A named volume created on first use and kept, so runs can share what they write (Hype's persistent claim). */
export class PersistentVolume extends Volume {
  readonly name: string;
  readonly storageClass: string;
  readonly size: string;

  constructor(name: string, storageClass: string, size: string | number) {
    super();
    this.name = checkDnsName('volume.name', name, 'volume name');
    this.storageClass = checkDnsName('volume.storageClass', storageClass, 'storage class name');
    this.size = memoryQuantity('volume.size', size);
    Object.freeze(this);
  }

  toSpec(): VolumeSpec {
    return { kind: 'persistent', name: this.name, storageClass: this.storageClass, size: this.size };
  }
}

/** A volume mounted at a path; made by {@link Volume.readOnly} and {@link Volume.readWrite}. */
export class VolumeMount {
  /** @internal use {@link Volume.readOnly} or {@link Volume.readWrite}. */
  constructor(
    readonly volume: Volume,
    readonly mountPath: string,
    readonly readOnly: boolean,
  ) {
    Object.freeze(this);
  }
}

interface State {
  readonly image: string | undefined;
  readonly requests: ResourceSpec;
  readonly limits: ResourceSpec;
  readonly env: Readonly<Record<string, string>>;
  readonly secrets: readonly { name: string; mountPath: string }[];
  readonly mounts: readonly VolumeMount[];
  readonly podTemplate: Record<string, unknown> | undefined;
}

const EMPTY: State = {
  image: undefined,
  requests: {},
  limits: {},
  env: {},
  secrets: [],
  mounts: [],
  podTemplate: undefined,
};

/**
 * Where and with what a closure runs: image, resources, environment
 * variables, secrets and volumes. Hype's `RunEnvironment`, as an immutable
 * builder: every `with…` returns a new environment and leaves this one as it
 * was, so a base environment can be shared and specialised.
 *
 * Values are validated when they are given, with errors naming the field
 * (`requests.cpu: "lots" is not a CPU quantity …`).
 *
 * ```ts
 * const env = RunEnvironment.image('registry/team/ml:3')
 *   .withRequest({ cpu: '500m', memory: '2Gi' })
 *   .withLimit({ memory: '4Gi' })
 *   .withEnv({ MODE: 'fast' })
 *   .withSecret('db-creds', '/etc/db')
 *   .withMount(new TransientVolume('ssd', '10Gi').readWrite('/scratch'));
 * ```
 */
export class RunEnvironment {
  private constructor(private readonly state: State) {
    Object.freeze(this);
  }

  /** The server's default image, no requests or limits. */
  static defaults(): RunEnvironment {
    return new RunEnvironment(EMPTY);
  }

  /** An environment running in the given image. */
  static image(name: string): RunEnvironment {
    return RunEnvironment.defaults().withImage(name);
  }

  /**
   * An environment based on a Kubernetes pod, as Hype's `fromYaml`: the pod
   * must have a container named `weft-run`, which must not set `image`,
   * `command` or `args` (weft sets them). Its cpu, memory and
   * `nvidia.com/gpu` requests and limits and its plain `env` values become
   * this environment's; everything else is kept as the pod template (see
   * {@link RunEnvironmentSpec}). Values given later through the `with…`
   * methods win over the YAML's, key by key.
   *
   * @param fileOrText a path to a YAML file, or the YAML itself: text with a
   *   line break is read as YAML, anything else as a path.
   */
  static fromPodYaml(fileOrText: string): RunEnvironment {
    let text = fileOrText;
    let origin = 'pod YAML';
    if (!fileOrText.includes('\n')) {
      origin = fileOrText;
      try {
        text = readFileSync(fileOrText, 'utf8');
      } catch (err) {
        throw invalid('podYaml', `cannot read ${fileOrText}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (err) {
      throw invalid('podYaml', `${origin} is not valid YAML: ${err instanceof Error ? err.message : String(err)}`);
    }
    return new RunEnvironment(fromPod(doc));
  }

  /** Runs in another image. */
  withImage(name: string): RunEnvironment {
    if (typeof name !== 'string' || name === '' || /\s/.test(name)) {
      throw invalid('image', `${JSON.stringify(name)} is not an image name`);
    }
    return this.with({ image: name });
  }

  /** Requests resources; keys given replace earlier ones, the others stay. */
  withRequest(resources: Resources): RunEnvironment {
    const requests = { ...this.state.requests, ...resourceSpec('requests', resources) };
    checkWithinLimits(requests, this.state.limits, 'requests');
    return this.with({ requests });
  }

  /** Limits resources; keys given replace earlier ones, the others stay. */
  withLimit(resources: Resources): RunEnvironment {
    const limits = { ...this.state.limits, ...resourceSpec('limits', resources) };
    checkWithinLimits(this.state.requests, limits, 'limits');
    return this.with({ limits });
  }

  /** Sets environment variables; names given replace earlier values, the others stay. */
  withEnv(vars: Readonly<Record<string, string>>): RunEnvironment {
    if (typeof vars !== 'object' || vars === null) throw invalid('env', 'must be an object of names to strings');
    for (const [name, value] of Object.entries(vars)) {
      if (!ENV_NAME.test(name)) throw invalid(`env.${name}`, 'is not a valid environment variable name');
      if (typeof value !== 'string') throw invalid(`env.${name}`, `must be a string, got ${typeof value}`);
    }
    return this.with({ env: { ...this.state.env, ...vars } });
  }

  /** Mounts the Kubernetes secret `name` (its keys as files) at an absolute path. */
  withSecret(name: string, path: string): RunEnvironment {
    const i = this.state.secrets.length;
    const secret = {
      name: checkDnsName(`secrets[${i}].name`, name, 'secret name'),
      mountPath: mountPath(`secrets[${i}].mountPath`, path),
    };
    this.checkPathFree(secret.mountPath, `secrets[${i}].mountPath`);
    return this.with({ secrets: [...this.state.secrets, secret] });
  }

  /** Mounts a volume: `withMount(new TransientVolume('ssd', '10Gi').readWrite('/scratch'))`. */
  withMount(mount: VolumeMount): RunEnvironment {
    const i = this.state.mounts.length;
    if (!(mount instanceof VolumeMount)) {
      throw invalid(`mounts[${i}]`, 'must be made by volume.readOnly(path) or volume.readWrite(path)');
    }
    this.checkPathFree(mount.mountPath, `mounts[${i}].mountPath`);
    return this.with({ mounts: [...this.state.mounts, mount] });
  }

  /** The wire form, a fresh plain JSON object (see {@link RunEnvironmentSpec}). */
  toSpec(): RunEnvironmentSpec {
    const s = this.state;
    const env: Record<string, string> = {};
    for (const name of Object.keys(s.env).sort()) env[name] = s.env[name]!;
    return {
      ...(s.image === undefined ? {} : { image: s.image }),
      requests: { ...s.requests },
      limits: { ...s.limits },
      env,
      secrets: s.secrets.map((x) => ({ ...x })),
      mounts: s.mounts.map((m) => ({ mountPath: m.mountPath, readOnly: m.readOnly, volume: m.volume.toSpec() })),
      ...(s.podTemplate === undefined ? {} : { podTemplate: structuredClone(s.podTemplate) }),
    };
  }

  private with(changes: Partial<State>): RunEnvironment {
    return new RunEnvironment(Object.freeze({ ...this.state, ...changes }));
  }

  private checkPathFree(path: string, field: string): void {
    const secret = this.state.secrets.findIndex((s) => s.mountPath === path);
    if (secret >= 0) throw invalid(field, `${path} is already used by secrets[${secret}]`);
    const mount = this.state.mounts.findIndex((m) => m.mountPath === path);
    if (mount >= 0) throw invalid(field, `${path} is already used by mounts[${mount}]`);
  }
}

function checkWithinLimits(requests: ResourceSpec, limits: ResourceSpec, changed: 'requests' | 'limits'): void {
  const over = (key: keyof ResourceSpec): boolean => {
    const r = requests[key];
    const l = limits[key];
    if (r === undefined || l === undefined) return false;
    if (key === 'cpu') return millicores(r as string) > millicores(l as string);
    if (key === 'memory') return bytes(r as string) > bytes(l as string);
    return (r as number) > (l as number);
  };
  for (const key of ['cpu', 'memory', 'gpu'] as const) {
    if (over(key)) {
      throw invalid(
        `${changed}.${key}`,
        `request ${String(requests[key])} is above limit ${String(limits[key])} (a request must not exceed its limit)`,
      );
    }
  }
}

const LIFTED_RESOURCES: Record<string, keyof ResourceSpec> = { cpu: 'cpu', memory: 'memory', 'nvidia.com/gpu': 'gpu' };

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Reads a pod document into an environment's state (see {@link RunEnvironment.fromPodYaml}). */
function fromPod(doc: unknown): State {
  if (!isObject(doc) || !isObject(doc['spec']) || !Array.isArray(doc['spec']['containers'])) {
    throw invalid('podYaml.spec.containers', 'the YAML must be a pod with spec.containers');
  }
  const template = structuredClone(doc);
  const containers = (template['spec'] as Record<string, unknown>)['containers'] as unknown[];
  const index = containers.findIndex((c) => isObject(c) && c['name'] === RUN_CONTAINER);
  if (index < 0) throw invalid('podYaml.spec.containers', `no container named "${RUN_CONTAINER}"`);
  const container = containers[index] as Record<string, unknown>;
  const field = `podYaml.spec.containers[${index}]`;
  for (const key of ['image', 'command', 'args']) {
    if (container[key] !== undefined) {
      throw invalid(`${field}.${key}`, `must not be set: weft sets the ${key} of "${RUN_CONTAINER}"`);
    }
  }

  const lift = (kind: 'requests' | 'limits'): ResourceSpec => {
    const resources = container['resources'];
    if (resources === undefined) return {};
    if (!isObject(resources)) throw invalid(`${field}.resources`, 'must be an object');
    const values = resources[kind];
    if (values === undefined) return {};
    if (!isObject(values)) throw invalid(`${field}.resources.${kind}`, 'must be an object');
    const picked: Record<string, unknown> = {};
    for (const [name, key] of Object.entries(LIFTED_RESOURCES)) {
      if (values[name] !== undefined) {
        picked[key] = key === 'gpu' && typeof values[name] === 'string' ? Number(values[name]) : values[name];
        delete values[name];
      }
    }
    if (Object.keys(values).length === 0) delete resources[kind];
    if (Object.keys(resources).length === 0) delete container['resources'];
    return resourceSpec(`${field}.resources.${kind}`, picked);
  };
  const requests = lift('requests');
  const limits = lift('limits');
  checkWithinLimits(requests, limits, 'limits');

  const env: Record<string, string> = {};
  if (container['env'] !== undefined) {
    if (!Array.isArray(container['env'])) throw invalid(`${field}.env`, 'must be a list of { name, value }');
    const rest = (container['env'] as unknown[]).filter((entry, i) => {
      if (!isObject(entry) || typeof entry['name'] !== 'string' || !ENV_NAME.test(entry['name'])) {
        throw invalid(`${field}.env[${i}].name`, 'must be a valid environment variable name');
      }
      if (entry['valueFrom'] !== undefined) return true;
      const value = entry['value'] ?? '';
      if (typeof value !== 'string') throw invalid(`${field}.env[${i}].value`, 'must be a string');
      env[entry['name']] = value;
      return false;
    });
    if (rest.length > 0) container['env'] = rest;
    else delete container['env'];
  }
  return Object.freeze({ ...EMPTY, requests, limits, env, podTemplate: template });
}
