import { Metadata } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { Status } from '@weft/common';
import { serverFailure } from './commands/server.js';
import { CliError, UsageError, describeError } from './errors.js';

function serviceError(code: Status, details: string): Error {
  return Object.assign(new Error(`${code} X: ${details}`), { code, details, metadata: new Metadata() });
}

describe('describeError', () => {
  it('points at the address when the control plane is unreachable', () => {
    expect(describeError(serviceError(Status.UNAVAILABLE, 'No connection established'), 'h:1')).toEqual({
      message: 'cannot reach the control plane at h:1 (is `npm start` running?)',
      exitCode: 1,
    });
  });

  it('says when the control plane lacks a method', () => {
    expect(
      describeError(serviceError(Status.UNIMPLEMENTED, 'The server does not implement the method'), 'h:1'),
    ).toEqual({
      message: 'the control plane at h:1 does not support this command (is it an older version?)',
      exitCode: 1,
    });
  });

  it("prints a gRPC error's details", () => {
    expect(describeError(serviceError(Status.NOT_FOUND, 'job j not found'), 'h:1').message).toBe('job j not found');
  });

  it('keeps exit codes of CLI errors', () => {
    expect(describeError(new UsageError('bad'), 'h:1')).toEqual({ message: 'bad', exitCode: 2 });
    expect(describeError(new CliError('stopped watching', 130), 'h:1').exitCode).toBe(130);
  });

  it('marks anything else as internal', () => {
    expect(describeError(new TypeError('x is undefined'), 'h:1').message).toBe('internal error: x is undefined');
  });
});

describe('serverFailure', () => {
  it('explains a busy port', () => {
    const err = new Error(
      'No address added out of total 1 resolved errors: [listen EADDRINUSE: address already in use 127.0.0.1:50051]',
    );
    expect(serverFailure(err)).toBe('cannot listen on 127.0.0.1:50051: the address is in use (another `weft server`?)');
    expect(serverFailure(new Error('EACCES: permission denied, mkdir'))).toBe(
      'server: EACCES: permission denied, mkdir',
    );
  });
});
