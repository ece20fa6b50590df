/**
 * The Python shim's own unit tests (wrappers/python-shim/tests, unittest,
 * against a fake sidecar), run with the python3 the sidecar uses.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

const PYTHON = process.env['WEFT_PYTHON'] || '/usr/bin/python3';

describe('the Python shim', () => {
  it('passes its unittest suite', () => {
    const r = spawnSync(PYTHON, ['-m', 'unittest', 'discover', '-s', join('wrappers', 'python-shim', 'tests'), '-v'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' },
    });
    const output = `${r.error ? `${String(r.error)}\n` : ''}${r.stdout}${r.stderr}`;
    if (r.status !== 0) process.stderr.write(output);
    expect(r.status, output).toBe(0);
    expect(r.stderr).toMatch(/^OK/m);
  });
});
