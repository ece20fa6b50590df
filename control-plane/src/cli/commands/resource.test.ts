import { describe, expect, it } from 'vitest';
import { Resource } from '@weft/proto';
import type { Clients } from '../client.js';
import type { Context } from '../context.js';
import { UsageError } from '../errors.js';
import { resourceCreate, resourceTable } from './resource.js';

describe('resourceTable', () => {
  it('lists limits and their use', () => {
    expect(
      resourceTable([
        Resource.fromPartial({ id: 'db', concurrency: 2, used: 1 }),
        Resource.fromPartial({ id: 'global', concurrency: 10 }),
      ]),
    ).toEqual(['ID      CONCURRENCY  USED', 'db      2            1', 'global  10           0']);
  });
});

describe('resourceCreate', () => {
  it('checks CONCURRENCY before calling the server', async () => {
    const ctx: Context = {
      io: { stdout: { write: () => true }, stderr: { write: () => true } },
      args: ['db', '1.5'],
      flags: { wait: false },
      output: 'text',
      server: 'test:1',
      // No service at all: the command must fail before it needs one.
      clients: {} as unknown as Clients,
    };
    await expect(resourceCreate(ctx)).rejects.toThrow(
      new UsageError('CONCURRENCY must be a positive integer, got "1.5"'),
    );
  });
});
