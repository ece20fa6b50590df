// CI guard: regenerates the ts-proto output and fails when it differs from the committed files.
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
execFileSync('npm', ['run', 'gen', '-w', '@weft/proto'], { cwd: root, stdio: 'inherit' });
const diff = execFileSync('git', ['status', '--porcelain', '--', 'proto/src/gen'], { cwd: root }).toString();
if (diff.trim()) {
  console.error('generated code in proto/src/gen is stale; run `npm run gen` and commit:\n' + diff);
  process.exit(1);
}
console.log('proto/src/gen is up to date');
