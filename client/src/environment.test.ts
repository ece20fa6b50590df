import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PersistentVolume, RunEnvironment, TransientVolume, type Resources } from './environment.js';

const POD = `
apiVersion: v1
kind: Pod
spec:
  nodeSelector:
    pool: gpu
  containers:
    - name: sidecar
      image: busybox
    - name: weft-run
      resources:
        requests:
          cpu: 250m
          memory: 512Mi
          ephemeral-storage: 1Gi
        limits:
          memory: 1Gi
          nvidia.com/gpu: 1
      env:
        - name: FROM_YAML
          value: yaml
        - name: MODE
          value: slow
        - name: TOKEN
          valueFrom:
            secretKeyRef: { name: tok, key: token }
`;

describe('RunEnvironment', () => {
  it('builds the wire form, immutably', () => {
    const base = RunEnvironment.image('registry/team/ml:3').withRequest({ cpu: 0.5, memory: '2Gi' });
    const scratch = new TransientVolume('ssd', '10Gi');
    const env = base
      .withLimit({ cpu: 2, memory: '4Gi', gpu: 1 })
      .withEnv({ B: '2', A: '1' })
      .withSecret('db-creds', '/etc/db')
      .withMount(scratch.readWrite('/scratch'))
      .withMount(new PersistentVolume('models', 'standard', '100Gi').readOnly('/models'));
    expect(env.toSpec()).toEqual({
      image: 'registry/team/ml:3',
      requests: { cpu: '500m', memory: '2Gi' },
      limits: { cpu: '2', memory: '4Gi', gpu: 1 },
      env: { A: '1', B: '2' },
      secrets: [{ name: 'db-creds', mountPath: '/etc/db' }],
      mounts: [
        {
          mountPath: '/scratch',
          readOnly: false,
          volume: { kind: 'transient', name: scratch.name, storageClass: 'ssd', size: '10Gi' },
        },
        {
          mountPath: '/models',
          readOnly: true,
          volume: { kind: 'persistent', name: 'models', storageClass: 'standard', size: '100Gi' },
        },
      ],
    });
    expect(Object.keys(env.toSpec().env)).toEqual(['A', 'B']);
    // The base is unchanged, and the spec is a JSON value.
    expect(base.toSpec()).toEqual({
      image: 'registry/team/ml:3',
      requests: { cpu: '500m', memory: '2Gi' },
      limits: {},
      env: {},
      secrets: [],
      mounts: [],
    });
    expect(JSON.parse(JSON.stringify(env.toSpec()))).toEqual(env.toSpec());
    expect(RunEnvironment.defaults().toSpec().image).toBeUndefined();
  });

  it('gives each transient volume its own stable name', () => {
    const vol = new TransientVolume('ssd', '1Gi');
    expect(vol.name).toMatch(/^weft-transient-[0-9a-f]{8}$/);
    const writer = RunEnvironment.defaults().withMount(vol.readWrite('/data')).toSpec();
    const reader = RunEnvironment.defaults().withMount(vol.readOnly('/data')).toSpec();
    expect(writer.mounts[0]!.volume).toEqual({ kind: 'transient', name: vol.name, storageClass: 'ssd', size: '1Gi' });
    expect(reader.mounts[0]!.volume).toEqual(writer.mounts[0]!.volume);
    // Same class and size, but another object: another volume.
    expect(new TransientVolume('ssd', '1Gi').name).not.toBe(vol.name);
  });

  it('merges requests, limits and env key by key, later values winning', () => {
    const env = RunEnvironment.defaults()
      .withRequest({ cpu: '100m', memory: 1024 })
      .withRequest({ cpu: '200m' })
      .withEnv({ A: '1', B: '1' })
      .withEnv({ B: '2' });
    expect(env.toSpec().requests).toEqual({ cpu: '200m', memory: '1024' });
    expect(env.toSpec().env).toEqual({ A: '1', B: '2' });
  });

  it('names the field in validation errors', () => {
    const env = RunEnvironment.defaults();
    expect(() => env.withRequest({ cpu: 'lots' })).toThrow('requests.cpu: "lots" is not a CPU quantity');
    expect(() => env.withRequest({ cpu: 0 })).toThrow('requests.cpu: must be more than 0');
    expect(() => env.withRequest({ cpu: '0.0001' })).toThrow('requests.cpu: "0.0001" is finer than 1m');
    expect(() => env.withLimit({ memory: '256MB' })).toThrow('limits.memory: "256MB" is not a memory quantity');
    expect(() => env.withLimit({ gpu: 1.5 })).toThrow('limits.gpu: must be a whole number of GPUs');
    expect(() => env.withRequest({ disk: '1Gi' } as Resources)).toThrow('requests.disk: unknown resource');
    expect(() => env.withRequest({ cpu: 2 }).withLimit({ cpu: 1 })).toThrow('limits.cpu: request 2 is above limit 1');
    expect(() => env.withEnv({ '1BAD': 'x' })).toThrow('env.1BAD: is not a valid environment variable name');
    expect(() => env.withSecret('Bad_Name', '/etc/x')).toThrow(
      'secrets[0].name: "Bad_Name" is not a valid secret name',
    );
    expect(() => env.withSecret('ok', 'relative/path')).toThrow(
      'secrets[0].mountPath: "relative/path" is not an absolute path',
    );
    expect(() => env.withImage('')).toThrow('image: "" is not an image name');
    expect(() => new TransientVolume('ssd', 'big')).toThrow('volume.size: "big" is not a memory quantity');
    expect(() => new PersistentVolume('My Volume', 'ssd', '1Gi')).toThrow('volume.name:');
    expect(() => new TransientVolume('ssd', '1Gi').readOnly('/data/../etc')).toThrow('mount.mountPath:');
  });

  it('refuses a mount path used twice', () => {
    const vol = new TransientVolume('ssd', '1Gi');
    const env = RunEnvironment.defaults().withSecret('creds', '/data').withMount(vol.readWrite('/scratch'));
    expect(() => env.withMount(vol.readOnly('/data'))).toThrow(
      'mounts[1].mountPath: /data is already used by secrets[0]',
    );
    expect(() => env.withSecret('other', '/scratch')).toThrow(
      'secrets[1].mountPath: /scratch is already used by mounts[0]',
    );
  });
});

describe('RunEnvironment.fromPodYaml', () => {
  it('reads requests, limits and env from container weft-run, keeping the rest as the pod template', () => {
    const spec = RunEnvironment.fromPodYaml(POD).toSpec();
    expect(spec.image).toBeUndefined();
    expect(spec.requests).toEqual({ cpu: '250m', memory: '512Mi' });
    expect(spec.limits).toEqual({ memory: '1Gi', gpu: 1 });
    expect(spec.env).toEqual({ FROM_YAML: 'yaml', MODE: 'slow' });
    expect(spec.podTemplate).toEqual({
      apiVersion: 'v1',
      kind: 'Pod',
      spec: {
        nodeSelector: { pool: 'gpu' },
        containers: [
          { name: 'sidecar', image: 'busybox' },
          {
            name: 'weft-run',
            resources: { requests: { 'ephemeral-storage': '1Gi' } },
            env: [{ name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'tok', key: 'token' } } }],
          },
        ],
      },
    });
  });

  it('lets values given through the API win over the YAML, key by key', () => {
    const spec = RunEnvironment.fromPodYaml(POD)
      .withImage('img:1')
      .withRequest({ cpu: 1 })
      .withEnv({ MODE: 'fast' })
      .toSpec();
    expect(spec.image).toBe('img:1');
    expect(spec.requests).toEqual({ cpu: '1', memory: '512Mi' });
    expect(spec.env).toEqual({ FROM_YAML: 'yaml', MODE: 'fast' });
  });

  it('reads a file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-env-'));
    try {
      const file = join(dir, 'pod.yaml');
      await writeFile(file, POD);
      expect(RunEnvironment.fromPodYaml(file).toSpec().requests).toEqual({ cpu: '250m', memory: '512Mi' });
      expect(() => RunEnvironment.fromPodYaml(join(dir, 'missing.yaml'))).toThrow('podYaml: cannot read');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects image, args and command on weft-run, and a pod without it', () => {
    const withField = (line: string) => POD.replace('    - name: weft-run\n', `    - name: weft-run\n      ${line}\n`);
    expect(() => RunEnvironment.fromPodYaml(withField('image: mine'))).toThrow(
      'podYaml.spec.containers[1].image: must not be set',
    );
    expect(() => RunEnvironment.fromPodYaml(withField('args: [a]'))).toThrow('podYaml.spec.containers[1].args');
    expect(() => RunEnvironment.fromPodYaml(withField('command: [sh]'))).toThrow('podYaml.spec.containers[1].command');
    expect(() => RunEnvironment.fromPodYaml(POD.replace('name: weft-run', 'name: other'))).toThrow(
      'podYaml.spec.containers: no container named "weft-run"',
    );
    expect(() => RunEnvironment.fromPodYaml('kind: Pod\nspec: {}\n')).toThrow('podYaml.spec.containers');
    expect(() => RunEnvironment.fromPodYaml('a: [\n')).toThrow('podYaml: pod YAML is not valid YAML');
  });

  it('validates quantities from the YAML, naming where they are', () => {
    expect(() => RunEnvironment.fromPodYaml(POD.replace('cpu: 250m', 'cpu: lots'))).toThrow(
      'podYaml.spec.containers[1].resources.requests.cpu: "lots" is not a CPU quantity',
    );
  });
});
