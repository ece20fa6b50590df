import { Status, isServiceError } from '@weft/common';
import { CliError } from '../errors.js';

// Failures of the call itself rather than of what was sent: describeError words them.
const NOT_ABOUT_INPUT: ReadonlySet<number> = new Set([
  Status.UNAVAILABLE,
  Status.DEADLINE_EXCEEDED,
  Status.UNIMPLEMENTED,
]);

/**
 * Prefixes a server's rejection with what was being sent, e.g.
 * `algorithm "sum": code.path: not found`. Connection failures, and a server
 * too old for the call, pass through untouched so they keep their own message.
 */
export function rejectedAs(what: string, err: unknown): unknown {
  if (isServiceError(err) && !NOT_ABOUT_INPUT.has(err.code)) {
    return new CliError(`${what}: ${err.details || err.message}`);
  }
  return err;
}

/** A flag the parser has already required; narrows it to string. */
export function required(value: string | undefined, flag: string): string {
  if (value === undefined) throw new CliError(`missing --${flag}`, 2);
  return value;
}
