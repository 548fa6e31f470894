// Content dedup (one blob per SHA-256, reference counted) and expiry of files and slots.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { makePng, request, requestSlot, slotUrls, startUploadServer, until, upload } from '../fixtures/upload-server.js';

const up = await startUploadServer({
  upload: ['    expire_after: 3s', '    cleanup_interval: 100ms', '    slot_lifetime: 1s', '    quota_total: 20000'].join('\n'),
});
t.teardown(() => up.close());
const { srv } = up;
await srv.register('alice', 'pw');
await srv.register('bob', 'pw');
const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'r' });
const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'r' });
t.teardown(() => [alice, bob].forEach((c) => c.end()));

const status = async (url: string) => (await request('HEAD', url)).status;

t.test('the same bytes uploaded twice are stored once; the blob lives while one upload refers to it', async (t) => {
  const png = await makePng(64, 64);
  const hash = createHash('sha256').update(png).digest('hex');
  const before = up.blobCount();
  const first = await upload(alice, 'a.png', png, 'image/png');
  t.equal(up.blobCount(), before + 1, 'one blob');
  // Half the expiry time later, so the two uploads expire apart.
  await new Promise((r) => setTimeout(r, 1500));
  const second = await upload(bob, 'copy.png', png, 'image/png');
  t.not(second, first, 'two uploads, two URLs');
  t.equal(up.blobCount(), before + 1, 'still one blob: no second copy');
  t.ok((await request('GET', second)).body.equals(png));

  await until(async () => (await status(first)) === 404, 15_000);
  t.equal(await status(second), 200, 'the second upload still serves');
  t.ok(existsSync(path.join(up.blobDir(), hash)), 'the blob is kept for it');
  await until(async () => (await status(second)) === 404, 15_000);
  await until(() => !existsSync(path.join(up.blobDir(), hash)), 10_000);
  t.pass('the last reference gone, the blob is deleted');
  t.equal(up.blobCount(), before);
});

t.test('expired files free the quota', async (t) => {
  const url = await upload(alice, 'big.bin', Buffer.alloc(15000, 7), 'application/octet-stream');
  const refused = await requestSlot(alice, 'more.bin', 10000);
  t.equal(refused.attrs.type, 'error', 'over the total quota while the file is kept');
  await until(async () => (await status(url)) === 404, 15_000);
  await until(async () => (await requestSlot(alice, 'more.bin', 10000)).attrs.type === 'result', 10_000);
  t.pass('granted again once the file expired');
});

t.test('a slot expires: its PUT URL gets 403', async (t) => {
  const urls = slotUrls(await requestSlot(alice, 'late.txt', 4, 'text/plain'));
  await new Promise((r) => setTimeout(r, 1100));
  const res = await request('PUT', urls.put, { headers: { 'Content-Type': 'text/plain' }, body: 'late' });
  t.equal(res.status, 403);
  t.match(res.body.toString(), /expired/);
});

t.test('a crash leftover is swept at startup', async (t) => {
  // A blob file without a record (the process died between writing the file and its record).
  const orphan = path.join(up.blobDir(), 'ab'.repeat(32));
  writeFileSync(orphan, 'orphan');
  const config = srv.configFile;
  // Any option change reloads the plugin, which sweeps again.
  writeFileSync(config, readFileSync(config, 'utf8').replace('cleanup_interval: 100ms', 'cleanup_interval: 150ms'));
  await srv.server.reload();
  await until(() => !existsSync(orphan), 10_000);
  t.pass('orphan blob removed');
});
