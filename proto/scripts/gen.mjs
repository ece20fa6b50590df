// Regenerates proto/src/gen from proto/weft/v1/*.proto with the protoc binary
// shipped in the npm `protoc` package and the pinned ts-proto plugin: no network,
// and byte-for-byte reproducible for a given package-lock.json.
import { execFileSync } from 'node:child_process';
import { readdirSync, rmSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const protocPkg = dirname(require.resolve('protoc/package.json'));
// protoc.cjs picks the binary for this platform from the package's bin/ folder.
const protoc = join(protocPkg, 'protoc.cjs');
const include = join(protocPkg, 'include');
const plugin = join(dirname(require.resolve('ts-proto/package.json')), 'protoc-gen-ts_proto');
const out = join(root, 'src', 'gen');

const defs = join(root, 'weft', 'v1');
const files = readdirSync(defs)
  .filter((f) => f.endsWith('.proto'))
  .sort()
  .map((f) => relative(root, join(defs, f)));

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const opts = [
  'outputServices=grpc-js',
  'env=node',
  'esModuleInterop=true',
  'importSuffix=.js',
  'useOptionals=messages',
  'forceLong=number',
  'oneof=unions-value',
  'useDate=true',
  'outputTypeRegistry=false',
  'exportCommonSymbols=false',
].join(',');
execFileSync(
  process.execPath,
  [
    protoc,
    `-I${root}`,
    `-I${include}`,
    `--plugin=protoc-gen-ts_proto=${plugin}`,
    `--ts_proto_out=${out}`,
    `--ts_proto_opt=${opts}`,
    `--descriptor_set_out=${join(out, 'weft.binpb')}`,
    '--include_imports',
    ...files,
  ],
  { cwd: root, stdio: 'inherit' },
);
console.log(`generated ${files.length} files into ${relative(process.cwd(), out)}`);
