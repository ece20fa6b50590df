import config from '../data/config.json' with { type: 'json' };
import { pkgValue } from 'fake-pkg';
import { formatLabel } from './format.js';
import { heavy } from './math.js';

/** Uses a relative module, a TypeScript module, a JSON file and a package. */
export function describe(n) {
  return formatLabel(config.label, heavy(n, pkgValue(n)));
}

export async function later(n) {
  const { scale } = await import('./scale.js');
  return scale(n) + 1;
}
