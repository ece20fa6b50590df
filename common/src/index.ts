/**
 * Shared by the control plane and the wrappers: the error type, the msgpack
 * codec, blob storage and logging.
 * @packageDocumentation
 */
export * from './errors.js';
export * from './codec.js';
export * from './blob/index.js';
export * from './logger.js';
