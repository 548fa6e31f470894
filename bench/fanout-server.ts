// The baseline of the MUC fan-out: a plain Node TLS server that writes every complete
// `<message …>…</message>` it reads from any connection to every connection (the sender's
// included, as a room reflects a message to its sender). It has the same certificate, TLS floor
// and socket options as Parley's c2s listener and as echo-server.ts. It cuts the input on the
// closing tag instead of parsing XML: that is the least any broadcaster must do so that two
// senders' bytes never interleave inside one element, and nothing more.
//   usage: node --import tsx bench/fanout-server.ts <port> <pem file with certificate and key>
import { readFileSync } from 'node:fs';
import tls from 'node:tls';

const [portArg, pemFile] = process.argv.slice(2);
const port = Number(portArg);
if (!Number.isInteger(port) || port <= 0 || !pemFile) {
  process.stderr.write('usage: fanout-server <port> <pem file>\n');
  process.exit(2);
}
const pem = readFileSync(pemFile, 'utf8');
const CLOSE = '</message>';
const OPEN_ROOT = '<stream>';

const sockets = new Set<tls.TLSSocket>();

const server = tls.createServer({ key: pem, cert: pem, minVersion: 'TLSv1.2', noDelay: true }, (socket) => {
  socket.setEncoding('utf8');
  sockets.add(socket);
  let pending = '';
  let rootSeen = false;
  socket.on('data', (chunk: string) => {
    pending += chunk;
    // The bench client opens a pseudo stream root first (see EchoClient); it is not broadcast.
    if (!rootSeen) {
      if (pending.length < OPEN_ROOT.length) return;
      if (pending.startsWith(OPEN_ROOT)) pending = pending.slice(OPEN_ROOT.length);
      rootSeen = true;
    }
    const end = pending.lastIndexOf(CLOSE);
    if (end < 0) return;
    const whole = pending.slice(0, end + CLOSE.length);
    pending = pending.slice(end + CLOSE.length);
    // One write per connection per read, the cheapest a broadcaster can be in Node.
    for (const s of sockets) s.write(whole);
  });
  // A reset from a client the bench destroyed is expected; it must not end the process.
  socket.on('error', () => socket.destroy());
  socket.on('close', () => sockets.delete(socket));
  // Every client gets a stream root too, so the bench splits what it receives like XMPP traffic.
  socket.write(OPEN_ROOT);
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
