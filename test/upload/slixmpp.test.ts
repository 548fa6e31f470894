// Interop: slixmpp (Debian's python3-slixmpp, with aiohttp) finds the upload service through
// disco, uploads a PNG, and shares its URL; the recipient gets the file-sharing metadata.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { makePng, request, startUploadServer } from '../fixtures/upload-server.js';

const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const script = fileURLToPath(new URL('../fixtures/upload-slix.py', import.meta.url));

const up = await startUploadServer();
t.teardown(() => up.close());
const { srv } = up;
await srv.register('alice', 'pw');
await srv.register('bob', 'pw');

t.test('slixmpp uploads and shares a picture', async (t) => {
  const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'b' });
  t.teardown(() => bob.end());
  const png = await makePng(200, 100);
  const file = path.join(srv.dataDir, 'from slix.png');
  writeFileSync(file, png);
  const run = new Promise<{ code: number; out: string }>((resolve) => {
    execFile(python, [script, String(srv.c2sPort), 'alice@localhost/slix', 'pw', file, 'image/png', 'bob@localhost'],
      { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
  });
  const { code, out } = await run;
  t.equal(code, 0, out);
  const msg = await bob.next((el) => el.name === 'message' && el.getChildText('body') !== null);
  const url = /^URL (\S+)$/m.exec(out)?.[1];
  t.ok(url, 'slixmpp got a GET URL');
  t.equal(msg.getChildText('body'), url);
  const got = await request('GET', url!);
  t.equal(got.status, 200);
  t.ok(got.body.equals(png), 'uploaded intact');
  const meta = msg.getChild('file-sharing', 'urn:xmpp:sfs:0')?.getChild('file', 'urn:xmpp:file:metadata:0');
  t.equal(meta?.getChildText('name'), 'from slix.png');
  t.equal(meta?.getChild('hash')?.text(), createHash('sha256').update(png).digest('base64'));
  t.equal(meta?.getChildText('width'), '200');
});
