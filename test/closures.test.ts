/**
 * Closures through the real path: client processes using @weft/client, a
 * control-plane process, sidecars and weft-closure worker processes, the
 * data directory as storage.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentials } from '@grpc/grpc-js';
import { VolumesClient, type ListVolumesResponse } from '@weft/proto';
import {
  FIXTURES,
  ROOT,
  alive,
  cleanup,
  clients,
  startServer,
  tempDir,
  until,
  weft,
  type ServerProc,
} from './helpers.js';

const CLIENT = join(FIXTURES, 'closures', 'client.mjs');

interface ClientRun {
  proc: ChildProcess;
  /** Resolves with the JSON lines printed on stdout and the exit code. */
  done: Promise<{ lines: unknown[]; code: number | null; stderr: string }>;
  /** Resolves with the first JSON line. */
  first: Promise<unknown>;
}

function runClient(address: string, args: string[]): ClientRun {
  const proc = spawn(process.execPath, [CLIENT, ...args], {
    env: { ...process.env, WEFT_SERVER: address },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  let resolveFirst: (v: unknown) => void = () => undefined;
  const first = new Promise<unknown>((r) => (resolveFirst = r));
  proc.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    const line = out.split('\n').find((l) => l.trim().startsWith('{') || l.trim().startsWith('['));
    if (line && out.includes('\n')) resolveFirst(JSON.parse(line) as unknown);
  });
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<{ lines: unknown[]; code: number | null; stderr: string }>((resolve) =>
    proc.on('exit', (code) =>
      resolve({
        lines: out
          .split('\n')
          .filter((l) => l.trim())
          .map((l) => JSON.parse(l) as unknown),
        code,
        stderr: err,
      }),
    ),
  );
  return { proc, done, first };
}

/** Runs a client scenario to its end and returns its one output line. */
async function scenario<T>(address: string, args: string[]): Promise<T> {
  const r = await runClient(address, args).done;
  if (r.code !== 0 || r.lines.length !== 1) {
    throw new Error(`client ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${JSON.stringify(r.lines)}`);
  }
  return r.lines[0] as T;
}

/** A TCP proxy whose connections can be cut, to make transport errors. */
async function proxy(target: string): Promise<{ address: string; cut: () => void; close: () => Promise<void> }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sockets = new Set<Socket>();
  const server: Server = createServer((down) => {
    const up = createConnection(port, host);
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        down.destroy();
        up.destroy();
      });
    }
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  return {
    address: `127.0.0.1:${addr.port}`,
    cut: () => {
      for (const s of sockets) s.destroy();
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

interface Failure {
  name: string;
  message: string;
  stack: string;
  remote: boolean;
  executionId?: string;
}

describe('closures', () => {
  let server: ServerProc;
  let dir: string;
  let volumes: InstanceType<typeof VolumesClient>;
  const listVolumes = (): Promise<string[]> =>
    new Promise((resolve, reject) =>
      volumes.list({}, (e: Error | null, r: ListVolumesResponse) =>
        e ? reject(e) : resolve(r.volumes.map((v) => v.name)),
      ),
    );

  beforeAll(async () => {
    dir = tempDir('weft-closures-');
    server = await startServer({ env: { WEFT_SESSION_TTL: '2s', WEFT_STOP_GRACE_MS: '1000' } });
    volumes = new VolumesClient(server.address, credentials.createInsecure());
  });
  afterAll(async () => {
    volumes.close();
    await server.stop();
    cleanup(dir);
  });

  it('round-trips typed values, binary data intact, errors with their remote stack, logs and env', async () => {
    const r = await scenario<{
      sum: number;
      viaRemote: number;
      bigType: string;
      intact: boolean;
      failed: Failure;
      logs: [string, string][];
      execEnv: string;
      custom: string;
      closure: number;
    }>(server.address, ['basics']);
    expect(r.sum).toBe(5);
    expect(r.viaRemote).toBe(42);
    expect(r.bigType).toBe('Uint8Array');
    expect(r.intact).toBe(true);
    expect(r.failed.name).toBe('RangeError');
    expect(r.failed.message).toBe('it broke');
    expect(r.failed.remote).toBe(true);
    // The remote frame: the staged copy of fns.mjs, where fail() threw.
    expect(r.failed.stack).toMatch(/at fail \(file:\/\/.*\/fns\.mjs:\d+:\d+\)/);
    expect(r.failed.stack).toContain(`<weft execution ${r.failed.executionId}>`);
    expect(r.logs.map(([s, t]) => [s, t.replace(/weft-closure-[-0-9a-f]+/, 'ID')])).toEqual([
      ['stdout', 'slow 10 in ID\n'],
    ]);
    expect(r.execEnv).toMatch(/^weft-closure-/);
    expect(r.custom).toBe('fast');
    expect(r.closure).toBe(41);
  });

  it('runs 20 parallel submissions concurrently, each with its own execution id', async () => {
    const results = await scenario<{ pid: number; start: number; end: number; executionId: string }[]>(server.address, [
      'parallel',
    ]);
    expect(results).toHaveLength(20);
    expect(new Set(results.map((r) => r.executionId)).size).toBe(20);
    // Concurrency: most runs overlap (workers are shared once warm, so not all 20 need their own).
    let maxOverlap = 0;
    for (const a of results)
      maxOverlap = Math.max(maxOverlap, results.filter((b) => b.start < a.end && a.start < b.end).length);
    expect(maxOverlap).toBeGreaterThanOrEqual(4);
  });

  it("Hype's volumes example: one writer, ten parallel readers; the transient volume goes when the client exits", async () => {
    const mount = join(dir, 'mnt', 'volume');
    const r = await scenario<{ volume: string; words: string[] }>(server.address, ['volumes', mount, 'exit']);
    expect(r.words).toEqual(Array(10).fill('weft'));
    expect(await listVolumes()).not.toContain(r.volume);
    expect(existsSync(join(server.dataDir, 'volumes', r.volume))).toBe(false);
    expect(existsSync(mount)).toBe(false);
  });

  it('removes a transient volume when its client is SIGKILLed', async () => {
    const mount = join(dir, 'mnt', 'killed');
    const c = runClient(server.address, ['volumes', mount, 'hang']);
    const r = (await c.first) as { volume: string; words: string[] };
    expect(r.words).toEqual(Array(10).fill('weft'));
    expect(await listVolumes()).toContain(r.volume);
    c.proc.kill('SIGKILL');
    await c.done;
    // No keep-alive for the session ttl (2 s here): the server removes it.
    await until(async () => !(await listVolumes()).includes(r.volume), 15_000, 'the volume to go');
    expect(existsSync(join(server.dataDir, 'volumes', r.volume))).toBe(false);
  });

  it('reuses a persistent volume across clients', async () => {
    const mount = join(dir, 'mnt', 'persistent');
    expect(await scenario(server.address, ['persistent', mount, 'write'])).toBe('kept');
    expect(await scenario(server.address, ['persistent', mount, 'read'])).toBe('kept');
    expect((await listVolumes()).filter((v) => v.startsWith('shared-'))).toHaveLength(1);
  });

  it('shows a secret file at its mount path', async () => {
    const file = join(dir, 'password');
    writeFileSync(file, 's3cr3t');
    const created = await weft(['secret', 'create', 'db-creds', '--from-file', file, '--server', server.address]);
    expect(created.code).toBe(0);
    expect(await scenario(server.address, ['secret', join(dir, 'mnt', 'secret')])).toBe('s3cr3t');
    const ls = await weft(['secret', 'ls', '--server', server.address]);
    expect(ls.stdout).toMatch(/db-creds\s+password/);
    expect(ls.stdout).not.toContain('s3cr3t');
  });

  it.each(['timeout', 'abort'])('%s stops the remote process', async (kind) => {
    const marker = join(dir, `${kind}.pid`);
    const r = await scenario<{ error: Failure }>(server.address, [kind, marker]);
    expect(r.error.name).toBe(kind === 'timeout' ? 'TimeoutError' : 'AbortError');
    const pid = Number(readFileSync(marker, 'utf8'));
    await until(() => !alive(pid), 15_000, `process ${pid} to be gone`);
  });

  it('a submission retried after a transport error runs once', async () => {
    const p = await proxy(server.address);
    const file = join(dir, 'count.txt');
    try {
      const c = runClient(p.address, ['count', file, '3000']);
      await until(() => existsSync(file), 20_000, 'the run to start');
      // The connection drops mid-run: the client submits again with the same id.
      p.cut();
      const r = await c.done;
      expect(r.code).toBe(0);
      expect(r.lines).toEqual([1]);
      expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(1);
    } finally {
      await p.close();
    }
  });

  it('refuses bad input before anything runs, naming what is wrong', async () => {
    const mount = join(dir, 'mnt', 'exclusive');
    const r = await scenario<{ fnArg: Failure; secret: Failure; second: Failure; reader: Failure }>(server.address, [
      'bad',
      mount,
    ]);
    expect(r.fnArg.message).toMatch(/args\[0\]/);
    expect(r.fnArg.message).toMatch(/function/);
    expect(r.secret.message).toMatch(/environment\.secrets\[0\]\.name: secret "nope" does not exist/);
    expect(r.second.message).toMatch(/mounted read-write .* by a running closure/);
    expect(r.reader.message).toMatch(/mounted read-write .* by a running closure/);
  });

  it("runs the README's two Hype examples", async () => {
    const run = (file: string): Promise<{ code: number | null; out: string; err: string }> =>
      new Promise((resolve) => {
        const p = spawn(process.execPath, [join(ROOT, 'examples', 'closures', 'dist', file)], {
          env: { ...process.env, WEFT_SERVER: server.address },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        p.stdout.on('data', (d: Buffer) => (out += d.toString()));
        p.stderr.on('data', (d: Buffer) => (err += d.toString()));
        p.on('exit', (code) => resolve({ code, out, err }));
      });
    const key = join(dir, 'key.json');
    writeFileSync(key, '{}');
    expect((await weft(['secret', 'create', 'gcp-key', '--from-file', key, '--server', server.address])).code).toBe(0);
    const full = await run('full.js');
    expect(full.code, full.err).toBe(0);
    expect(full.out).toMatch(/^Linux /);
    expect(full.out).toMatch(/^Filesystem/m);
    expect(full.out).toMatch(/^WEFT_EXECUTION_ID=weft-closure-/m);
    expect(full.err).toMatch(/weft: staged extractEnv: \d+ files newly uploaded, \d+ cached/);
    const volumes = await run('volumes.js');
    expect(volumes.code, volumes.err).toBe(0);
    const m = /^wrote (\w+); read (.*)$/m.exec(volumes.out);
    expect(m).not.toBeNull();
    expect(m![2]!.split(', ')).toEqual(Array(10).fill(m![1]));
  });

  it('a closure submits a closure and runs a stored pipeline through the same client', async () => {
    const c = clients(server.address);
    try {
      await c.applyFile(join(FIXTURES, 'algorithms.yaml'));
      await c.store({
        name: 'closure-pipe',
        nodes: [{ nodeName: 'E', algorithmName: 'echo', input: ['@flowInput.value'] }],
        flowInput: { value: 0 },
      });
    } finally {
      c.close();
    }
    const r = await scenario<{ inner: number; pipeline: unknown[] }>(server.address, ['nested', 'closure-pipe']);
    expect(r.inner).toBe(42);
    expect(r.pipeline).toEqual([41]);
  });
});
