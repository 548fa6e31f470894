// XEP-0363 over HTTP: PUT with its checks, GET/HEAD with ranges, CORS and security headers,
// and paths that try to leave the storage directory.
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { makePng, rawHttp, request, requestSlot, slotUrls, startUploadServer, until, upload } from '../fixtures/upload-server.js';

const up = await startUploadServer();
t.teardown(() => up.close());
const { srv } = up;
await srv.register('alice', 'pw');
const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'r' });
t.teardown(() => alice.end());
const origin = `http://127.0.0.1:${srv.httpPort}`;

const png = await makePng(120, 80);
const getUrl = await upload(alice, 'picture.png', png, 'image/png');

t.test('PUT a PNG, GET it back byte for byte', async (t) => {
  const res = await request('GET', getUrl);
  t.equal(res.status, 200);
  t.ok(res.body.equals(png), 'identical bytes');
  t.equal(res.headers['content-type'], 'image/png');
  t.equal(res.headers['content-length'], String(png.length));
  t.equal(res.headers.etag, `"${createHash('sha256').update(png).digest('hex')}"`, 'ETag is the content hash');
  t.match(res.headers['cache-control'], /^public, max-age=\d+, immutable$/);
  t.match(res.headers['content-disposition'], /^inline; filename="picture\.png"; filename\*=UTF-8''picture\.png$/);
  t.equal(res.headers['accept-ranges'], 'bytes');
  t.equal(res.headers['access-control-allow-origin'], '*');
  t.equal(res.headers['x-content-type-options'], 'nosniff');
  t.match(res.headers['content-security-policy'], /default-src 'none'.*sandbox/);
  const again = await request('GET', getUrl, { headers: { 'If-None-Match': res.headers.etag! } });
  t.equal(again.status, 304, 'conditional GET');
  t.equal(again.body.length, 0);
});

t.test('HEAD gives length and type without the body', async (t) => {
  const res = await request('HEAD', getUrl);
  t.equal(res.status, 200);
  t.equal(res.headers['content-length'], String(png.length));
  t.equal(res.headers['content-type'], 'image/png');
  t.equal(res.body.length, 0);
});

t.test('Range requests', async (t) => {
  const part = await request('GET', getUrl, { headers: { Range: 'bytes=10-19' } });
  t.equal(part.status, 206);
  t.equal(part.headers['content-range'], `bytes 10-19/${png.length}`);
  t.equal(part.headers['content-length'], '10');
  t.ok(part.body.equals(png.subarray(10, 20)));
  const tail = await request('GET', getUrl, { headers: { Range: 'bytes=-5' } });
  t.equal(tail.status, 206);
  t.ok(tail.body.equals(png.subarray(png.length - 5)), 'suffix range');
  const open = await request('GET', getUrl, { headers: { Range: `bytes=${png.length - 3}-` } });
  t.ok(open.body.equals(png.subarray(png.length - 3)), 'open-ended range');
  const clipped = await request('GET', getUrl, { headers: { Range: `bytes=0-${png.length + 100}` } });
  t.equal(clipped.status, 206);
  t.equal(clipped.headers['content-range'], `bytes 0-${png.length - 1}/${png.length}`);
  const bad = await request('GET', getUrl, { headers: { Range: `bytes=${png.length}-` } });
  t.equal(bad.status, 416, 'beyond the end');
  t.equal(bad.headers['content-range'], `bytes */${png.length}`);
  const stale = await request('GET', getUrl, { headers: { Range: 'bytes=0-9', 'If-Range': '"other"' } });
  t.equal(stale.status, 200, 'If-Range with another ETag: the whole file');
  const multi = await request('GET', getUrl, { headers: { Range: 'bytes=0-1,5-6' } });
  t.equal(multi.status, 200, 'several ranges: the whole file');
  const head = await request('HEAD', getUrl, { headers: { Range: 'bytes=0-99' } });
  t.equal(head.status, 206);
  t.equal(head.headers['content-length'], '100');
});

t.test('CORS preflight', async (t) => {
  for (const url of [getUrl, `${origin}/upload/localhost/anything`]) {
    const res = await request('OPTIONS', url, {
      headers: { Origin: 'https://web.example', 'Access-Control-Request-Method': 'PUT', 'Access-Control-Request-Headers': 'content-type' },
    });
    t.equal(res.status, 204);
    t.equal(res.headers['access-control-allow-origin'], '*');
    t.match(res.headers['access-control-allow-methods'], /PUT/);
    t.match(res.headers['access-control-allow-methods'], /GET/);
    t.match(res.headers['access-control-allow-headers']?.toLowerCase(), /content-type/);
    t.match(res.headers['access-control-allow-headers']?.toLowerCase(), /authorization/);
  }
});

t.test('PUT checks: token, size, type, reuse', async (t) => {
  const body = Buffer.from('hello, upload');
  const urls = slotUrls(await requestSlot(alice, 'note.txt', body.length, 'text/plain'));
  const put = (url: string, o: { body?: Buffer; type?: string; headers?: Record<string, string> } = {}) =>
    request('PUT', url, { headers: { 'Content-Type': o.type ?? 'text/plain', ...o.headers }, body: o.body ?? body });
  const u = new URL(urls.put);
  const token = u.searchParams.get('t')!;
  const flipped = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
  t.equal((await put(urls.put.replace(token, flipped))).status, 403, 'wrong token');
  t.equal((await put(urls.get)).status, 403, 'no token');
  const e = u.searchParams.get('e')!;
  t.equal((await put(urls.put.replace(`e=${e}`, `e=${Number(e) + 3600}`))).status, 403, 'token is bound to its expiry');

  const path = u.pathname + u.search;
  const longer = await rawHttp(srv.httpPort,
    `PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: ${body.length + 1}\r\n\r\n`, Buffer.concat([body, Buffer.from('!')]));
  t.equal(longer.status, 413, 'Content-Length larger than the slot');
  const chunked = await rawHttp(srv.httpPort,
    `PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n`,
    Buffer.from(`${(body.length + 5).toString(16)}\r\n${body.toString()}12345\r\n0\r\n\r\n`));
  t.equal(chunked.status, 413, 'chunked body growing past the slot');
  t.equal((await put(urls.put, { body: body.subarray(1) })).status, 400, 'shorter body');
  const shortChunked = await rawHttp(srv.httpPort,
    `PUT ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n`,
    Buffer.from(`3\r\nhel\r\n0\r\n\r\n`));
  t.equal(shortChunked.status, 400, 'chunked body ending early');
  t.equal((await put(urls.put, { type: 'text/html' })).status, 415, 'another content type');
  t.equal((await request('GET', urls.get)).status, 404, 'nothing stored by the failed attempts');
  t.equal(up.blobCount(), 1, 'only the PNG is stored');

  const ok = await put(urls.put, { type: 'Text/Plain; charset=utf-8' });
  t.equal(ok.status, 201, 'the slot still works; type compared without parameters');
  t.equal(ok.headers['access-control-allow-origin'], '*');
  const again = await put(urls.put);
  t.equal(again.status, 409, 'second PUT of the same slot');
  const got = await request('GET', urls.get);
  t.equal(got.body.toString(), body.toString());
  t.equal(got.headers['content-type'], 'text/plain', 'served with the declared type');
  t.match(got.headers['content-disposition'], /^attachment;/, 'non-media files download');

  const noType = slotUrls(await requestSlot(alice, 'blob', 3));
  t.equal((await request('PUT', noType.put, { headers: { 'Content-Type': 'application/x-thing' }, body: 'abc' })).status, 201,
    'no declared type: any type accepted');
  t.equal((await request('GET', noType.get)).headers['content-type'], 'application/x-thing');
});

t.test('an upload cut off midway leaves nothing behind', async (t) => {
  const body = Buffer.alloc(200_000, 3);
  const urls = slotUrls(await requestSlot(alice, 'cut.bin', body.length, 'application/octet-stream'));
  const u = new URL(urls.put);
  const socket = net.connect(srv.httpPort, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write(`PUT ${u.pathname}${u.search} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${body.length}\r\n\r\n`);
  socket.write(body.subarray(0, 100_000));
  // The server is writing its temporary file; then the client vanishes.
  await until(() => readdirSync(`${up.blobDir()}/tmp`).length === 1, 10_000);
  socket.destroy();
  await until(() => readdirSync(`${up.blobDir()}/tmp`).length === 0, 10_000);
  t.pass('temporary file removed');
  t.equal((await request('GET', urls.get)).status, 404, 'nothing served');
  const retry = await request('PUT', urls.put, { headers: { 'Content-Type': 'application/octet-stream' }, body });
  t.equal(retry.status, 201, 'the slot can be used again');
});

t.test('HTML is served as an attachment in a sandbox', async (t) => {
  const html = Buffer.from('<script>alert(document.cookie)</script>');
  const url = await upload(alice, 'page.html', html, 'text/html');
  const res = await request('GET', url);
  t.equal(res.headers['content-type'], 'text/html');
  t.match(res.headers['content-disposition'], /^attachment;/);
  t.match(res.headers['content-security-policy'], /sandbox/);
  t.equal(res.headers['x-content-type-options'], 'nosniff');
});

t.test('unicode file names in Content-Disposition', async (t) => {
  const url = await upload(alice, 'Grüße "ü".jpg', Buffer.from('not really a jpeg'), 'image/jpeg');
  const res = await request('GET', url);
  t.equal(res.status, 200);
  // Quotes are replaced when the name is sanitised; the ASCII fallback replaces the rest.
  t.equal(res.headers['content-disposition'], `inline; filename="Gr__e ___.jpg"; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20_%C3%BC_.jpg`);
});

t.test('paths never leave the storage directory', async (t) => {
  const id = new URL(getUrl).pathname.split('/')[3]!;
  const attempts = [
    '/upload/localhost/../../etc/passwd',
    '/upload/localhost/%2e%2e/%2e%2e/etc/passwd',
    '/upload/localhost/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd',
    '/upload/localhost/..%2f..%2fparley.yml',
    '/upload/localhost/..%5c..%5cparley.yml',
    '/upload/localhost//etc/passwd',
    '/upload/localhost/%00/passwd',
    `/upload/localhost/tmp/${id}`,
    `/upload/localhost/thumb/..%2f${id}.png`,
    `/upload/localhost/${createHash('sha256').update(png).digest('hex')}/x`,
    '/upload/localhost/parley.db/x',
  ];
  for (const path of attempts) {
    const get = await request('GET', origin + path);
    t.equal(get.status, 404, `GET ${path}`);
    t.notOk(get.body.includes('root:'), 'no system file');
    const put = await request('PUT', origin + path, { body: 'x' });
    t.ok(put.status === 404 || put.status === 403, `PUT ${path}: ${put.status}`);
  }
  const absolute = await rawHttp(srv.httpPort, 'GET http://127.0.0.1/etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', Buffer.alloc(0));
  t.equal(absolute.status, 404, 'absolute-form target');
  const named = await request('GET', getUrl.replace(/[^/]+$/, '..%2f..%2fparley.yml'));
  t.equal(named.status, 200, 'the name part is only a label: the slot id picks the file');
  t.ok(named.body.equals(png));
  t.equal((await request('GET', `${origin}/upload/localhost/AAAAAAAAAAAAAAAAAAAAAAAA/x`)).status, 404, 'unknown slot id');
  t.equal((await request('DELETE', getUrl)).status, 405);
});

t.test('files are named by hash only', async (t) => {
  const hash = createHash('sha256').update(png).digest('hex');
  const names = readdirSync(up.blobDir()).filter((n) => n !== 'tmp');
  t.ok(names.includes(hash), 'the PNG is stored under its SHA-256');
  t.ok(names.every((n) => /^[0-9a-f]{64}$/.test(n)), `nothing else: ${names.join(', ')}`);
  t.same(readdirSync(`${up.blobDir()}/tmp`), [], 'no temporary files left');
});
