import { Status, WeftError } from '../errors.js';
import type { BlobStore } from './port.js';

export class S3BlobStore {
  static fromUrl(_url: URL, _env: NodeJS.ProcessEnv): BlobStore {
    throw new WeftError(Status.UNIMPLEMENTED, 'WEFT_BLOBS: s3:// is being written');
  }
}
