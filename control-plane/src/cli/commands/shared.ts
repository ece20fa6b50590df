import { Status, isServiceError } from '@weft/common';
import { CliError } from '../errors.js';

/**
 * Prefixes a server's rejection with what was being sent, e.g.
 * `algorithm "sum": code.path: not found`. Connection failures pass through
 * untouched so they keep their own message.
 */
export function rejectedAs(what: string, err: unknown): unknown {
  if (isServiceError(err) && err.code !== Status.UNAVAILABLE && err.code !== Status.DEADLINE_EXCEEDED) {
    return new CliError(`${what}: ${err.details || err.message}`);
  }
  return err;
}

/** A flag the parser has already required; narrows it to string. */
export function required(value: string | undefined, flag: string): string {
  if (value === undefined) throw new CliError(`missing --${flag}`, 2);
  return value;
}
