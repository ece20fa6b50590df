import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanup, startServer, tempDir, weft } from './helpers.js';

const dirs: string[] = [];
const dir = (): string => {
  const d = tempDir('weft-settings-');
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach(cleanup));

/** Runs `weft server` with extra flags; it must refuse to start. */
async function refused(flags: string[], env: Record<string, string> = {}): Promise<{ line: string; dataDir: string }> {
  const dataDir = dir();
  const r = await weft(['server', '--port', '0', '--metrics-port', '-1', '--data-dir', dataDir, ...flags], env);
  expect(r.code).toBe(1);
  const lines = r.stderr.split('\n').filter(Boolean);
  expect(lines).toHaveLength(1);
  return { line: lines[0]!, dataDir };
}

describe('weft server adapter settings', () => {
  it('refuses an unknown or unavailable state store, naming the setting and what it accepts, opening nothing', async () => {
    const a = await refused(['--state', 'mysql://db/weft']);
    expect(a.line).toBe(
      'weft: server: WEFT_STATE: "mysql://db/weft" is not a state store URL; accepted: sqlite:FILE (postgres:// is not available yet)',
    );
    expect(existsSync(join(a.dataDir, 'weft.db'))).toBe(false);
    expect(existsSync(join(a.dataDir, 'blobs'))).toBe(false);
    const b = await refused([], { WEFT_STATE: 'postgres://db/weft' });
    expect(b.line).toBe(
      'weft: server: WEFT_STATE: the PostgreSQL state store is not available yet; accepted: sqlite:FILE',
    );
  });

  it('refuses an unknown or unavailable executor', async () => {
    expect((await refused(['--executor', 'kubernetes'])).line).toBe(
      'weft: server: WEFT_EXECUTOR: the Kubernetes executor is not available yet; accepted: local',
    );
    expect((await refused([], { WEFT_EXECUTOR: 'nomad' })).line).toBe(
      'weft: server: WEFT_EXECUTOR: "nomad" is not an executor; accepted: local (kubernetes is not available yet)',
    );
  });

  it('refuses a blob store it cannot use before serving, naming WEFT_BLOBS', async () => {
    expect((await refused(['--blobs', 'ftp://host/x'])).line).toMatch(
      /^weft: server: WEFT_BLOBS: unsupported storage scheme "ftp:"/,
    );
    const file = join(dir(), 'a-file');
    writeFileSync(file, '');
    const r = await refused([], { WEFT_BLOBS: `fs:${file}/blobs` });
    expect(r.line).toMatch(/^weft: server: WEFT_BLOBS: directory .*a-file\/blobs is not writable/);
    expect(existsSync(join(r.dataDir, 'weft.db'))).toBe(false);
  });

  it('keeps state and blobs where the settings say, and stops cleanly', async () => {
    const stateDir = dir();
    const blobDir = join(dir(), 'payloads');
    const server = await startServer({
      env: { WEFT_STATE: `sqlite:${stateDir}/state.db`, WEFT_BLOBS: `fs:${blobDir}` },
    });
    try {
      expect(existsSync(join(stateDir, 'state.db'))).toBe(true);
      expect(existsSync(blobDir)).toBe(true);
      expect(existsSync(join(server.dataDir, 'weft.db'))).toBe(false);
      const r = await weft(['algorithm', 'ls', '--server', server.address]);
      expect(r.code).toBe(0);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });
});
