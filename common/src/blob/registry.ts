import { Status, WeftError } from '../errors.js';
import { FsBlobStore } from './fs.js';
import type { BlobStore } from './port.js';

/** Builds a store from its URL; `env` carries settings that are not in the URL (credentials, endpoint). */
export type BlobStoreFactory = (url: URL, env: NodeJS.ProcessEnv) => BlobStore | Promise<BlobStore>;

const factories = new Map<string, BlobStoreFactory>();

/**
 * Registers the adapter for a URL scheme (without the colon), as grpc-js
 * registers resolvers. Adapters with heavy dependencies register a factory
 * that imports them on first use.
 */
export function registerBlobStore(scheme: string, factory: BlobStoreFactory): void {
  factories.set(scheme, factory);
}

registerBlobStore('fs', (url) => new FsBlobStore(decodeURIComponent(url.pathname)));
registerBlobStore('s3', async (url, env) => {
  const { S3BlobStore } = await import('./s3.js');
  return S3BlobStore.fromUrl(url, env);
});

/**
 * Opens a blob store from its URL: `fs:<directory>` or
 * `s3://bucket/prefix?endpoint=…&region=…&path_style=true`. Refuses unknown
 * schemes and malformed URLs with INVALID_ARGUMENT naming `setting`.
 */
export async function openBlobStore(
  url: string,
  opts: { env?: NodeJS.ProcessEnv; setting?: string } = {},
): Promise<BlobStore> {
  const setting = opts.setting ?? 'WEFT_BLOBS';
  // fs: paths are taken as they are (relative ones too), not parsed as URLs.
  if (url.startsWith('fs:')) return new FsBlobStore(url.slice(3));
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new WeftError(
      Status.INVALID_ARGUMENT,
      `${setting}: "${url}" is not a storage URL (fs:<dir> or s3://bucket/prefix)`,
    );
  }
  const factory = factories.get(parsed.protocol.replace(/:$/, ''));
  if (!factory) {
    throw new WeftError(
      Status.INVALID_ARGUMENT,
      `${setting}: unsupported storage scheme "${parsed.protocol}" (expected fs:<dir> or s3://bucket/prefix)`,
    );
  }
  return factory(parsed, opts.env ?? process.env);
}
