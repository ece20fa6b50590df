/**
 * The weft.v1 contract: generated messages, service definitions and clients.
 * Everything else imports the contract from here, never from gen/ paths.
 * @packageDocumentation
 */
export * from './gen/weft/v1/common.js';
export * from './gen/weft/v1/algorithms.js';
export * from './gen/weft/v1/pipelines.js';
export * from './gen/weft/v1/jobs.js';
export * from './gen/weft/v1/workers.js';
export * from './gen/weft/v1/schedules.js';
export * from './gen/weft/v1/closures.js';

import { fileURLToPath } from 'node:url';

/** Path of the compiled FileDescriptorSet (with imports), used for server reflection. */
export const descriptorSetPath: string = fileURLToPath(new URL('../src/gen/weft.binpb', import.meta.url));
