import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { BlobStore, Logger } from '@weft/common';
import { BlobStageStore } from '@weft/stage';
import { stageAlgorithmCode } from '../cli/code.js';
import { loadAlgorithmSpecs } from '../cli/files.js';
import type { AlgorithmRegistry } from '../engine/algorithms.js';

/**
 * Applies every `DIR/<name>/algorithms.yaml` of the `--register` directories
 * (the examples), in name order. The one place the server registers
 * algorithms from files.
 */
export async function registerAlgorithmDirs(
  dirs: string[],
  algorithms: AlgorithmRegistry,
  blobs: BlobStore,
  log: Logger,
): Promise<void> {
  for (const dir of dirs) {
    for (const entry of existsSync(dir) ? readdirSync(dir).sort() : []) {
      const file = join(dir, entry, 'algorithms.yaml');
      if (!existsSync(file)) continue;
      const { specs, warnings } = await loadAlgorithmSpecs(file);
      for (const w of warnings) log.warn(w, { file });
      for (const local of specs) {
        // Into the blob store, as `weft algorithm apply` does through the API.
        const { spec, staged } = await stageAlgorithmCode(local, new BlobStageStore(blobs), file);
        const def = await algorithms.apply(spec);
        log.info('algorithm registered', { algorithm: def.name, from: file, files: staged?.files ?? 0 });
      }
    }
  }
}
