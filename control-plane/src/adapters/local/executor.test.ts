import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@weft/common';
import { describe, expect, it } from 'vitest';
import type { AlgorithmDef } from '../../ports/executor.js';
import { PROBE_WORKER, executorContract } from '../../ports/contracts/executor.contract.js';
import { LocalExecutor, loopbackAddress } from './executor.js';

const log = createLogger({ component: 'executor-contract' }, 'error');

const algorithm = (dir: string): AlgorithmDef => ({
  name: 'probe',
  env: 'nodejs',
  codePath: dir,
  codeStage: '',
  entryPoint: 'index.js',
  image: '',
  cpu: 0.1,
  memBytes: 64 * 1024 ** 2,
  gpu: 0,
  minHotWorkers: 0,
  maxWorkers: 0,
  env_vars: {},
});

executorContract(
  'local',
  (capacity) => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-executor-'));
    const alg = algorithm(dir);
    return Promise.resolve({
      executor: new LocalExecutor({ logDir: join(dir, 'logs'), log, sidecar: PROBE_WORKER, ...capacity }),
      algorithm: alg,
      refused: [
        { ...alg, codePath: '', image: 'registry.example/algo:1' },
        { ...alg, codePath: '', image: '' },
      ],
      cleanup: () => Promise.resolve(rmSync(dir, { recursive: true, force: true })),
    });
  },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-executor-'));
    const executor = new LocalExecutor({ logDir: join(dir, 'logs'), log, sidecar: PROBE_WORKER, cpu: 1 });
    // Its log directory is gone: the worker's log file cannot be opened, so no worker can start.
    rmSync(join(dir, 'logs'), { recursive: true });
    return Promise.resolve({
      executor,
      algorithm: algorithm(dir),
      cleanup: () => Promise.resolve(rmSync(dir, { recursive: true, force: true })),
    });
  },
);

describe('LocalExecutor', () => {
  it('refuses image-only algorithms and docker_image with the reason users see', () => {
    const ex = new LocalExecutor({ logDir: join(mkdtempSync(join(tmpdir(), 'weft-executor-')), 'logs'), log });
    const alg = algorithm('/code');
    expect(ex.admits({ ...alg, codePath: '', image: 'img:1' })).toBe(
      'has no code.path, only the image img:1; the local executor runs local code (images need the Kubernetes executor, not available yet)',
    );
    expect(ex.admits({ ...alg, codePath: '' })).toBe('has no code.path; the local executor runs local code');
    // Code laid out from the blob store needs no local path.
    expect(ex.admits({ ...alg, codePath: '', codeStage: 'abc' })).toBeUndefined();
  });

  it('has workers dial loopback for a wildcard listener, the host itself otherwise', () => {
    expect(loopbackAddress({ host: '0.0.0.0', port: 5 })).toBe('127.0.0.1:5');
    expect(loopbackAddress({ host: '::', port: 5 })).toBe('[::1]:5');
    expect(loopbackAddress({ host: '10.1.2.3', port: 5 })).toBe('10.1.2.3:5');
    expect(loopbackAddress({ host: 'fe80::1', port: 5 })).toBe('[fe80::1]:5');
  });
});
