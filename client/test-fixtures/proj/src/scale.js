// Built-ins, with and without the node: prefix: staging must skip them.
import { EOL } from 'os';
import { sep } from 'node:path';

export function scale(n) {
  return n * (EOL.length > 0 && sep.length > 0 ? 1 : 0);
}
