// The baseline: a plain Node TLS server that writes back whatever it reads. It runs as its own
// process with the same certificate, TLS floor and socket options as Parley's c2s listener, so
// the difference between the two is what Parley adds on top of Node's TLS.
//   usage: node --import tsx bench/echo-server.ts <port> <pem file with certificate and key>
import { readFileSync } from 'node:fs';
import tls from 'node:tls';

const [portArg, pemFile] = process.argv.slice(2);
const port = Number(portArg);
if (!Number.isInteger(port) || port <= 0 || !pemFile) {
  process.stderr.write('usage: echo-server <port> <pem file>\n');
  process.exit(2);
}
const pem = readFileSync(pemFile, 'utf8');

const server = tls.createServer({ key: pem, cert: pem, minVersion: 'TLSv1.2', noDelay: true }, (socket) => {
  // A reset from a client the bench destroyed is expected; it must not end the process.
  socket.on('error', () => socket.destroy());
  socket.pipe(socket);
});
server.on('tlsClientError', () => undefined);
server.maxConnections = 100_000;
server.listen(port, '127.0.0.1');

const stop = (): void => {
  server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
