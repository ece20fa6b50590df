#!/usr/bin/env node
/**
 * The `weft` command: runs the control plane (`weft server`) and talks to a
 * running one. See `weft --help`.
 * @packageDocumentation
 */
import { run } from './run.js';

// `weft exec ls | head` closes stdout early; that is not an error worth a trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  process.stderr.write(`weft: cannot write output: ${err.message}\n`);
  process.exit(1);
});

process.exitCode = await run(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }, process.env);
