/**
 * The server side of the grpc-js ping-pong baseline, run as its own process
 * (forked by run.ts): echoes every message on the bidi stream. Sends its port
 * to the parent over IPC and exits when the parent disconnects.
 */
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { EchoService } from './echo.js';

const server = new Server();
server.addService(EchoService, {
  echo: (call: ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', (b: Buffer) => call.write(b));
    call.on('end', () => call.end());
    call.on('error', () => undefined);
  },
});
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    process.stderr.write(`pingpong server: ${err.message}\n`);
    process.exit(1);
  }
  process.send?.({ port });
});
process.on('disconnect', () => {
  server.forceShutdown();
  process.exit(0);
});
