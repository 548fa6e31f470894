// XEP-0363 over XMPP: discovery, slot requests, their errors and the quotas.
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { condition, request, requestSlot, slotUrls, startUploadServer, upload } from '../fixtures/upload-server.js';

const NS = 'urn:xmpp:http:upload:0';

const up = await startUploadServer({
  hosts: ['localhost', 'example.test'],
  upload: ['    max_size: 5000', '    quota_total: 1000', '    quota_daily: 3000'].join('\n'),
});
t.teardown(() => up.close());
const { srv } = up;
for (const user of ['alice', 'tot', 'day']) await srv.register(user, 'pw');
await srv.register('carol', 'pw', 'example.test');
const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'r' });
t.teardown(() => alice.end());

t.test('the host lists the upload service; the service describes itself', async (t) => {
  alice.send("<iq type='get' to='localhost' id='items'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
  const items = await alice.nextNamed('iq', 'items');
  const item = items.getChild('query')!.getChildren('item').find((i) => i.attrs.jid === 'upload.localhost');
  t.ok(item, 'upload.localhost in the host\'s disco#items');
  t.equal(item?.attrs.name, 'HTTP File Upload');

  alice.send("<iq type='get' to='upload.localhost' id='info'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  const info = (await alice.nextNamed('iq', 'info')).getChild('query')!;
  t.same(info.getChild('identity')!.attrs, { category: 'store', type: 'file', name: 'HTTP File Upload' });
  t.ok(info.getChildren('feature').some((f) => f.attrs.var === NS), 'feature urn:xmpp:http:upload:0');
  const form = info.getChild('x', 'jabber:x:data')!;
  const field = (name: string) => form.getChildren('field').find((f) => f.attrs.var === name)?.getChildText('value');
  t.equal(field('FORM_TYPE'), NS);
  t.equal(field('max-file-size'), '5000', 'max-file-size in bytes (XEP-0128)');

  alice.send("<iq type='get' to='upload.localhost' id='node'><query xmlns='http://jabber.org/protocol/disco#info' node='x'/></iq>");
  t.equal(condition(await alice.nextNamed('iq', 'node')), 'item-not-found');
  alice.send("<iq type='get' to='upload.localhost' id='other'><ping xmlns='urn:xmpp:ping'/></iq>");
  t.equal(condition(await alice.nextNamed('iq', 'other')), 'service-unavailable');
  alice.send("<message to='upload.localhost' id='msg'><body>hi</body></message>");
  t.equal(condition(await alice.nextNamed('message', 'msg')), 'service-unavailable');
});

t.test('a slot: PUT and GET URLs under base_url, the name kept and sanitised', async (t) => {
  const reply = await requestSlot(alice, 'my juliet.jpg', 123, 'image/jpeg');
  t.equal(reply.attrs.type, 'result');
  t.equal(reply.attrs.from, 'upload.localhost');
  const { put, get } = slotUrls(reply);
  const base = `http://127.0.0.1:${srv.httpPort}/upload/localhost/`;
  t.match(get, new RegExp(`^${base.replace(/\./g, '\\.')}[A-Za-z0-9_-]{24}/my%20juliet\\.jpg$`), 'GET URL: slot id + encoded name');
  t.ok(put.startsWith(`${get}?e=`) && /&t=[A-Za-z0-9_-]{43}$/.test(put), 'PUT URL carries expiry and token');
  t.equal(reply.getChild('slot')!.getChild('put')!.getChildren('header').length, 0, 'no extra headers needed');
  const second = slotUrls(await requestSlot(alice, 'my juliet.jpg', 123, 'image/jpeg'));
  t.not(second.get, get, 'every slot has its own id');

  for (const [raw, expected] of [
    ['../../etc/passwd', 'passwd'],
    ['C:\\Windows\\evil.exe', 'evil.exe'],
    ['..', 'file'],
    ['a\u0085b\u202e.png', 'a_b_.png'],
    ['  .hidden  ', 'hidden'],
  ] as const) {
    const urls = slotUrls(await requestSlot(alice, raw, 10));
    t.equal(decodeURIComponent(urls.get.slice(urls.get.lastIndexOf('/') + 1)), expected, `${JSON.stringify(raw)} -> ${expected}`);
  }
  const long = slotUrls(await requestSlot(alice, `${'x'.repeat(400)}.jpeg`, 10));
  const name = decodeURIComponent(long.get.slice(long.get.lastIndexOf('/') + 1));
  t.ok(Buffer.byteLength(name) <= 200 && name.endsWith('.jpeg'), 'long names are cut, keeping the extension');
  const started = Date.now();
  const huge = slotUrls(await requestSlot(alice, `${'ü'.repeat(30000)}.png`, 10));
  const cut = decodeURIComponent(huge.get.slice(huge.get.lastIndexOf('/') + 1));
  t.ok(Buffer.byteLength(cut) <= 200 && cut.endsWith('ü.png'), 'multibyte names are cut on whole characters');
  t.ok(Date.now() - started < 3000, 'a huge name costs no time');
});

t.test('bad requests', async (t) => {
  const tooLarge = await requestSlot(alice, 'big.bin', 5001);
  t.equal(tooLarge.attrs.type, 'error');
  t.equal(condition(tooLarge), 'not-acceptable');
  t.equal(tooLarge.getChild('error')!.attrs.type, 'modify');
  const ftl = tooLarge.getChild('error')!.getChild('file-too-large', NS);
  t.ok(ftl, '<file-too-large/> (XEP-0363 §5)');
  t.equal(ftl?.getChildText('max-file-size'), '5000');
  t.equal(condition(await requestSlot(alice, 'empty', 0)), 'not-acceptable', 'empty file');
  t.equal(condition(await requestSlot(alice, 'x', -1)), 'bad-request', 'negative size');
  t.equal(condition(await requestSlot(alice, 'x', '12abc')), 'bad-request', 'size not a number');
  t.equal(condition(await requestSlot(alice, '', 10)), 'bad-request', 'empty filename');
  t.equal(condition(await requestSlot(alice, 'x', 10, 'text/html\r\nX-Evil: 1')), 'bad-request', 'header injection in content-type');
  t.equal(condition(await requestSlot(alice, 'x', 10, 'not a type')), 'bad-request');
  alice.send(`<iq type='get' to='upload.localhost' id='nosize'><request xmlns='${NS}' filename='a'/></iq>`);
  t.equal(condition(await alice.nextNamed('iq', 'nosize')), 'bad-request', 'size missing');
  alice.send(`<iq type='get' to='upload.localhost' id='two'><request xmlns='${NS}' filename='a' size='1'/><request xmlns='${NS}' filename='b' size='1'/></iq>`);
  t.equal(condition(await alice.nextNamed('iq', 'two')), 'bad-request', 'two payloads');
  alice.send(`<iq type='get' to='someone@upload.localhost' id='jid'><request xmlns='${NS}' filename='a' size='1'/></iq>`);
  t.equal(condition(await alice.nextNamed('iq', 'jid')), 'service-unavailable', 'the service has no users');
  alice.send(`<iq type='set' to='upload.localhost' id='set'><request xmlns='${NS}' filename='a' size='1'/></iq>`);
  t.equal(condition(await alice.nextNamed('iq', 'set')), 'service-unavailable', 'slots are requested with get');
});

t.test('only users of the host get slots', async (t) => {
  const carol = await RawClient.login(srv.c2sPort, 'carol', 'pw', { resource: 'c', host: 'example.test' });
  const refused = await requestSlot(carol, 'a.txt', 10, 'text/plain', 'upload.localhost');
  t.equal(condition(refused), 'not-allowed', 'a user of another host');
  t.equal(refused.getChild('error')!.attrs.type, 'cancel');
  const own = await requestSlot(carol, 'a.txt', 10, 'text/plain', 'upload.example.test');
  t.ok(slotUrls(own).get.includes('/upload/example.test/'), 'each host has its own service and path');
  carol.end();
});

t.test('quotas: total bytes stored and bytes per day', async (t) => {
  const tot = await RawClient.login(srv.c2sPort, 'tot', 'pw', { resource: 'r' });
  await upload(tot, 'a.bin', Buffer.alloc(600, 1), 'application/octet-stream');
  const over = await requestSlot(tot, 'b.bin', 600);
  t.equal(condition(over), 'resource-constraint', 'stored 600 + 600 > 1000');
  t.equal(over.getChild('error')!.attrs.type, 'wait');
  t.equal(over.attrs.type, 'error');
  t.equal(slotUrls(await requestSlot(tot, 'c.bin', 400)).get.length > 0, true, 'what still fits is granted');
  tot.end();

  const day = await RawClient.login(srv.c2sPort, 'day', 'pw', { resource: 'r' });
  for (let i = 0; i < 3; i++) t.equal((await requestSlot(day, `d${i}.bin`, 900)).attrs.type, 'result', `slot ${i + 1}: ${(i + 1) * 900} bytes today`);
  const daily = await requestSlot(day, 'd3.bin', 900);
  t.equal(condition(daily), 'resource-constraint', '3600 > 3000 bytes a day');
  const stamp = daily.getChild('error')!.getChild('retry', NS)?.attrs.stamp as string | undefined;
  t.match(stamp, /^\d{4}-\d\d-\d\dT00:00:00Z$/, '<retry stamp/> at the next UTC midnight');
  t.ok(stamp && Date.parse(stamp) > Date.now() && Date.parse(stamp) - Date.now() <= 86_400_000);
  t.equal((await requestSlot(day, 'd4.bin', 300)).attrs.type, 'result', 'the refused request was not counted');
  day.end();
});

t.test('a slot from the PUT URL of another slot does not work', async (t) => {
  const a = slotUrls(await requestSlot(alice, 'a.txt', 5, 'text/plain'));
  const b = slotUrls(await requestSlot(alice, 'b.txt', 5, 'text/plain'));
  const tokenOfB = new URL(b.put).searchParams;
  const forged = `${a.get}?e=${tokenOfB.get('e')}&t=${tokenOfB.get('t')}`;
  const res = await request('PUT', forged, { headers: { 'Content-Type': 'text/plain' }, body: 'hello' });
  t.equal(res.status, 403, 'tokens are bound to their slot');
});
