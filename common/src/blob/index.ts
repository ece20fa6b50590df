export * from './port.js';
export * from './fs.js';
export * from './registry.js';
