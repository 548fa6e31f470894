// Thumbnails at PUT time and XEP-0447 enrichment of messages that share one of our URLs.
import { createHash } from 'node:crypto';
import type { Element } from 'ltx';
import sharp from 'sharp';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import type { HttpUploadApi } from '../../plugins/http_upload/index.js';
import { makePng, request, startUploadServer, upload } from '../fixtures/upload-server.js';

const THUMB = 48;
const up = await startUploadServer({ upload: `    thumbnail_size: ${THUMB}`, modules: '  carbons: {}' });
t.teardown(() => up.close());
const { srv } = up;
await srv.register('alice', 'pw');
await srv.register('bob', 'pw');
const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'phone' });
const aliceDesk = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'desk' });
const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'b' });
t.teardown(() => [alice, aliceDesk, bob].forEach((c) => c.end()));
aliceDesk.send("<iq type='set' id='carbons'><enable xmlns='urn:xmpp:carbons:2'/></iq>");
await aliceDesk.nextNamed('iq', 'carbons');

const png = await makePng(300, 200);
const pngUrl = await upload(alice, 'holiday.png', png, 'image/png');

let n = 0;
/** Sends a message from alice; resolves with what bob receives. */
async function exchange(inner: string, to = 'bob@localhost'): Promise<Element> {
  const id = `m${++n}`;
  alice.send(`<message to='${to}' type='chat' id='${id}'>${inner}</message>`);
  return bob.next((el) => el.name === 'message' && el.attrs.id === id);
}

const sharing = (m: Element) => m.getChild('file-sharing', 'urn:xmpp:sfs:0');

type Test = Parameters<Parameters<typeof t.test>[0]>[0];

async function checkThumbnail(t: Test, file: Element, width: number, height: number): Promise<Buffer> {
  const thumb = file.getChild('thumbnail', 'urn:xmpp:thumbs:1');
  t.ok(thumb, 'XEP-0264 thumbnail');
  t.equal(thumb?.attrs['media-type'], 'image/png');
  const uri = thumb?.attrs.uri as string;
  t.match(uri, /^data:image\/png;base64,/);
  const bytes = Buffer.from(uri.slice(uri.indexOf(',') + 1), 'base64');
  const meta = await sharp(bytes).metadata();
  t.equal(meta.format, 'png', 'the thumbnail decodes as a PNG');
  t.ok(meta.width! <= THUMB && meta.height! <= THUMB, `no larger than ${THUMB} px (${meta.width}x${meta.height})`);
  t.equal(Math.max(meta.width!, meta.height!), THUMB, 'the longest side is the configured size');
  t.ok(Math.abs(meta.width! / meta.height! - width / height) < 0.05, 'aspect ratio kept');
  t.equal(thumb?.attrs.width, String(meta.width));
  t.equal(thumb?.attrs.height, String(meta.height));
  t.ok(bytes.length < 8192, `a few KB (${bytes.length} bytes)`);
  return bytes;
}

t.test('a message whose body is our image URL gets XEP-0447 file sharing', async (t) => {
  const started = Date.now();
  const got = await exchange(`<body>${pngUrl}</body><request xmlns='urn:xmpp:receipts'/><markable xmlns='urn:xmpp:chat-markers:0'/><origin-id xmlns='urn:xmpp:sid:0' id='o1'/>`);
  t.ok(Date.now() - started < 5000, 'the enrichment does not hold the message up');
  t.equal(got.getChildText('body'), pngUrl, 'the body stays as the fallback');
  const fs = sharing(got);
  t.ok(fs, '<file-sharing xmlns="urn:xmpp:sfs:0"/>');
  const file = fs!.getChild('file', 'urn:xmpp:file:metadata:0')!;
  t.ok(file, 'XEP-0446 metadata');
  t.equal(file.getChildText('media-type'), 'image/png');
  t.equal(file.getChildText('name'), 'holiday.png');
  t.equal(file.getChildText('size'), String(png.length));
  t.equal(file.getChildText('width'), '300');
  t.equal(file.getChildText('height'), '200');
  const hash = file.getChild('hash', 'urn:xmpp:hashes:2');
  t.equal(hash?.attrs.algo, 'sha-256');
  t.equal(hash?.text(), createHash('sha256').update(png).digest('base64'), 'the hash matches the file');
  const thumb = await checkThumbnail(t, file, 300, 200);
  const source = fs!.getChild('sources')?.getChild('url-data', 'http://jabber.org/protocol/url-data');
  t.equal(source?.attrs.target, pngUrl, 'url-data source');
  t.equal(got.getChild('fallback', 'urn:xmpp:fallback:0')?.attrs.for, 'urn:xmpp:sfs:0', 'XEP-0428 fallback marker');
  t.equal(got.getChild('x', 'jabber:x:oob')?.getChildText('url'), pngUrl, 'XEP-0066 added for older clients');
  t.ok(got.getChild('request', 'urn:xmpp:receipts'), 'other payloads kept');

  const carbon = await aliceDesk.next((el) => el.name === 'message' && el.getChild('sent', 'urn:xmpp:carbons:2') !== undefined);
  const copied = carbon.getChild('sent')!.getChild('forwarded')!.getChild('message')!;
  t.ok(sharing(copied), 'the carbon copy carries the same metadata');

  const served = await request('GET', pngUrl.replace(/\/([A-Za-z0-9_-]{24})\/[^/]+$/, '/thumb/$1.png'));
  t.equal(served.status, 200, 'the thumbnail has its own URL');
  t.equal(served.headers['content-type'], 'image/png');
  t.ok(served.body.equals(thumb), 'same bytes as in the message');
});

t.test('with the same URL as out-of-band data, and to a full JID', async (t) => {
  const got = await exchange(`<body> ${pngUrl}\n</body><x xmlns='jabber:x:oob'><url>${pngUrl}</url></x>`, 'bob@localhost/b');
  t.ok(sharing(got), 'enriched');
  t.equal(got.getChildren('x', 'jabber:x:oob').length, 1, 'no second oob element');
});

t.test('JPEG (EXIF-rotated), WebP and animated GIF', async (t) => {
  const jpeg = await sharp(await makePng(160, 90)).jpeg().withMetadata({ orientation: 6 }).toBuffer();
  const webp = await sharp(await makePng(90, 120)).webp().toBuffer();
  const frame = async (color: string) => sharp({ create: { width: 60, height: 40, channels: 3, background: color } }).png().toBuffer();
  const gif = await sharp([await frame('red'), await frame('blue'), await frame('green')], { join: { animated: true } }).gif().toBuffer();
  for (const [name, bytes, type, w, h] of [
    ['rotated.jpg', jpeg, 'image/jpeg', 90, 160],
    ['pic.webp', webp, 'image/webp', 90, 120],
    ['anim.gif', gif, 'image/gif', 60, 40],
  ] as const) {
    const url = await upload(alice, name, bytes, type);
    const file = sharing(await exchange(`<body>${url}</body>`))?.getChild('file', 'urn:xmpp:file:metadata:0');
    t.ok(file, `${name} enriched`);
    if (!file) continue;
    t.equal(file.getChildText('width'), String(w), `${name} width as displayed`);
    t.equal(file.getChildText('height'), String(h), `${name} height (first frame)`);
    await checkThumbnail(t, file, w, h);
  }
});

t.test('other files get metadata without image fields', async (t) => {
  const text = Buffer.from('just some notes\n');
  const url = await upload(alice, 'notes.txt', text, 'text/plain');
  const file = sharing(await exchange(`<body>${url}</body>`))?.getChild('file', 'urn:xmpp:file:metadata:0');
  t.equal(file?.getChildText('media-type'), 'text/plain');
  t.equal(file?.getChildText('size'), String(text.length));
  t.equal(file?.getChild('width'), undefined);
  t.equal(file?.getChild('thumbnail'), undefined);
  const fake = await upload(alice, 'fake.png', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>'), 'image/png');
  const fakeFile = sharing(await exchange(`<body>${fake}</body>`))?.getChild('file', 'urn:xmpp:file:metadata:0');
  t.ok(fakeFile, 'still described');
  t.equal(fakeFile?.getChild('thumbnail'), undefined, 'no thumbnail for content that is not a raster image');
});

t.test('the http_upload service describes our URLs to other plugins', async (t) => {
  const api = srv.server.host('localhost')!.services.get('http_upload') as HttpUploadApi;
  t.equal(api.domain, 'upload.localhost');
  const d = await api.describe(pngUrl);
  t.match(d, { name: 'holiday.png', size: png.length, type: 'image/png', width: 300, height: 200 });
  t.equal(d?.sha256, createHash('sha256').update(png).digest('hex'));
  t.equal((await request('GET', d!.thumbnailUrl!)).status, 200, 'thumbnail URL');
  t.equal(await api.describe('https://example.org/x.png'), undefined);
});

t.test('left untouched', async (t) => {
  const untouched: Array<[string, string]> = [
    ['OMEMO (Conversations)', `<body>${pngUrl}</body><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'><iv>AAAA</iv></header><payload>AAAA</payload></encrypted>`],
    ['OMEMO 2', `<body>${pngUrl}</body><encrypted xmlns='urn:xmpp:omemo:2'><header sid='1'/><payload>AAAA</payload></encrypted>`],
    ['legacy OpenPGP', `<body>${pngUrl}</body><x xmlns='jabber:x:encrypted'>AAAA</x>`],
    ['OpenPGP for XMPP', `<body>${pngUrl}</body><openpgp xmlns='urn:xmpp:openpgp:0'>AAAA</openpgp>`],
    ['aesgcm URL', `<body>${pngUrl.replace('http://', 'aesgcm://')}#${'ab'.repeat(44)}</body>`],
    ['foreign URL', '<body>https://example.org/upload/picture.png</body>'],
    ['our prefix, unknown slot', `<body>${pngUrl.replace(/\/[A-Za-z0-9_-]{24}\//, '/AAAAAAAAAAAAAAAAAAAAAAAA/')}</body>`],
    ['URL inside text', `<body>look: ${pngUrl}</body>`],
    ['other OOB URL', `<body>${pngUrl}</body><x xmlns='jabber:x:oob'><url>https://example.org/x.png</url></x>`],
    ['a reply', `<body>${pngUrl}</body><reply xmlns='urn:xmpp:reply:0' id='x' to='bob@localhost'/>`],
    ['already shared', `<body>${pngUrl}</body><file-sharing xmlns='urn:xmpp:sfs:0'><file xmlns='urn:xmpp:file:metadata:0'><name>mine</name></file></file-sharing>`],
  ];
  for (const [label, inner] of untouched) {
    const got = await exchange(inner);
    const sfs = got.getChildren('file-sharing', 'urn:xmpp:sfs:0');
    t.ok(sfs.length <= 1 && (sfs.length === 0 || sfs[0]!.getChild('file')!.getChildText('name') === 'mine'), `${label}: no file sharing added`);
    t.equal(got.getChild('fallback', 'urn:xmpp:fallback:0'), undefined, `${label}: no fallback marker`);
  }
});
