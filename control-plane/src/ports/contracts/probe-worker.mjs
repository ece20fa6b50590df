#!/usr/bin/env node
// A stand-in for the sidecar in the executor contract suite: it dials
// WEFT_SERVER over plain TCP, reports its launch environment as one JSON line,
// then reports the signals it gets. The algorithm's own environment
// (WEFT_ALGORITHM_ENV_JSON) steers it: PROBE_EXIT_CODE=n exits with n once
// connected; PROBE_IGNORE_STOP=1 keeps running after SIGTERM.
import { connect } from 'node:net';

const env = process.env;
const vars = JSON.parse(env.WEFT_ALGORITHM_ENV_JSON ?? '{}');
const server = env.WEFT_SERVER ?? '';
const colon = server.lastIndexOf(':');
const host = server.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
const port = Number(server.slice(colon + 1));

const sock = connect({ host, port });
const send = (msg) => sock.write(`${JSON.stringify(msg)}\n`);

sock.on('connect', () => {
  const launch = {};
  for (const [k, v] of Object.entries(env)) if (k.startsWith('WEFT_')) launch[k] = v;
  send({ hello: launch });
  if (vars.PROBE_EXIT_CODE !== undefined) sock.end(() => process.exit(Number(vars.PROBE_EXIT_CODE)));
});
sock.on('error', () => process.exit(1));
sock.on('close', () => {
  if (vars.PROBE_IGNORE_STOP !== '1') process.exit(0);
});

process.on('SIGTERM', () => {
  send({ signal: 'SIGTERM' });
  if (vars.PROBE_IGNORE_STOP !== '1') sock.end(() => process.exit(0));
});
