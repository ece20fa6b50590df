import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { scheduleStoreContract } from '../../ports/contracts/schedule-store.contract.js';
import { stateStoreContract } from '../../ports/contracts/state-store.contract.js';
import { SqliteScheduleStore } from './schedule-store.js';
import { SqliteStateStore } from './state-store.js';

/** A real file in a fresh temporary directory; every open() is another connection to it. */
function sqliteFixture<S>(open: (file: string) => S): () => Promise<{ open(): Promise<S>; cleanup(): Promise<void> }> {
  return () => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-contract-'));
    const file = join(dir, 'weft.db');
    return Promise.resolve({
      open: () => Promise.resolve(open(file)),
      cleanup: () => Promise.resolve(rmSync(dir, { recursive: true, force: true })),
    });
  };
}

stateStoreContract(
  'sqlite',
  sqliteFixture((file) => new SqliteStateStore(file)),
);
scheduleStoreContract(
  'sqlite',
  sqliteFixture((file) => new SqliteScheduleStore(file)),
);
