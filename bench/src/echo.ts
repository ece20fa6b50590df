import { makeGenericClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';

const identity = (b: Buffer): Buffer => b;

/** A bidi echo service on raw bytes: nothing but grpc-js framing and HTTP/2. */
export const EchoService = {
  echo: {
    path: '/bench.Echo/Echo',
    requestStream: true,
    responseStream: true,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
} satisfies ServiceDefinition;

export const EchoClient = makeGenericClientConstructor(EchoService, 'bench.Echo');
