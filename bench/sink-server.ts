// The baseline of the upload scenario: a plain Node HTTP server that streams each PUT body into
// a new file and answers 201, which is the least an upload endpoint does. Parley does more on
// the same path (slot token check, SHA-256 of the body, rename to the hash, a thumbnail for
// images), and the difference is what the ratio shows.
//   usage: node --import tsx bench/sink-server.ts <port> <directory for the files>
import { createWriteStream } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

const [portArg, dir] = process.argv.slice(2);
const port = Number(portArg);
if (!Number.isInteger(port) || port <= 0 || !dir) {
  process.stderr.write('usage: sink-server <port> <directory>\n');
  process.exit(2);
}
let n = 0;

const server = http.createServer((req, res) => {
  if (req.method !== 'PUT') {
    res.writeHead(405, { 'Content-Length': '0' }).end();
    return;
  }
  // A counter, not the URL, names the file: the URL is not trusted to be a safe file name.
  const file = path.join(dir, `put-${++n}`);
  pipeline(req, createWriteStream(file)).then(
    () => res.writeHead(201, { 'Content-Length': '0' }).end(),
    () => {
      if (!res.headersSent) res.writeHead(500, { 'Content-Length': '0' });
      res.end();
    },
  );
});
server.listen(port, '127.0.0.1');

const stop = (): void => {
  server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
