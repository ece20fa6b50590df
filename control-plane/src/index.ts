/**
 * The weft control plane: start one in-process with startControlPlane().
 * @packageDocumentation
 */
export { startControlPlane, configFromEnv, type ControlPlane, type ControlPlaneConfig } from './server/app.js';
export { runServer } from './server/run.js';
