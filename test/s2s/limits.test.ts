// Misbehaving and missing peers: a spoofed `from` on an authenticated stream, stanzas before
// authentication, unreachable and silent servers (bounced within setup_timeout), idle streams,
// the per-address connection limit of the s2s listener, and remote presence withdrawn when the
// stream that carried it dies.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import type { RosterApi } from '../../plugins/roster/api.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';
import { issueLeaf, writeTestCerts } from '../helpers/test-ca.js';
import { IM_MODULES, S2S_LISTEN, routeYaml, startPair } from '../helpers/s2s-pair.js';
import { RawPeer } from '../helpers/s2s-raw-peer.js';

const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
const certDir = mkdtempSync(path.join(tmpdir(), 'parley-s2s-limits-'));
t.teardown(() => rmSync(certDir, { recursive: true, force: true }));
const bCerts = writeTestCerts(certDir, ['b.test']);
const carol = issueLeaf(['c.test']);

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

/** Accepts connections and never says a word. */
const silent = net.createServer((socket) => socket.on('error', () => undefined)).listen(0, '127.0.0.1');
await new Promise((r) => silent.once('listening', r));
t.teardown(() => silent.close());
const silentSockets = new Set<net.Socket>();
silent.on('connection', (s) => {
  silentSockets.add(s);
  s.on('close', () => silentSockets.delete(s));
});
t.teardown(() => {
  for (const s of silentSockets) s.destroy();
});

const b = await startTestServer({
  hosts: ['b.test'],
  listen: S2S_LISTEN,
  modules: IM_MODULES,
  yaml: [
    `certfiles: [${JSON.stringify(bCerts.combinedFile)}]`,
    's2s:',
    `  ca_files: [${JSON.stringify(bCerts.caFile)}]`,
    '  setup_timeout: 700ms',
    '  connect_timeout: 500ms',
    '  stanza_rate: 20',
    '  stanza_burst: 5',
    // c.test is the raw test peer's domain: what B sends it fails fast instead of asking DNS.
    routeYaml({ 'dead.test': await closedPort(), 'silent.test': (silent.address() as net.AddressInfo).port, 'c.test': await closedPort() }),
  ].join('\n'),
});
t.teardown(() => b.close());
const s2sPort = b.ports('s2s')[0]!;
await b.register('bob', 'pw');
const bob = await RawClient.login(b.c2sPort, 'bob', 'pw', { host: 'b.test', resource: 'r1', presence: false });
t.teardown(() => bob.destroy());
bob.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>");
await bob.next((el) => el.attrs.id === 'r0');
bob.send('<presence/>');

/** A raw server for c.test, authenticated on B with SASL EXTERNAL (B trusts the test CA). */
async function carolServer(): Promise<RawPeer> {
  const peer = await RawPeer.dial(s2sPort, 'c.test', 'b.test');
  const plain = await peer.open();
  if (!plain.getChild('starttls')) throw new Error('no STARTTLS offered');
  const features = await peer.secure({ cert: carol.chainPem, key: carol.keyPem });
  const mechanisms = features.getChild('mechanisms')?.getChildren('mechanism').map((m) => m.text());
  if (!mechanisms?.includes('EXTERNAL')) throw new Error(`EXTERNAL not offered: ${features.toString()}`);
  const answer = await peer.external();
  if (answer.name !== 'success') throw new Error(`EXTERNAL failed: ${answer.toString()}`);
  return peer;
}

t.test('SASL EXTERNAL for another identity than the stream\'s from is refused with invalid-authzid', async (t) => {
  const peer = await RawPeer.dial(s2sPort, 'c.test', 'b.test');
  t.teardown(() => peer.destroy());
  await peer.open();
  await peer.secure({ cert: carol.chainPem, key: carol.keyPem });
  const answer = await peer.external('a.test');
  t.equal(answer.name, 'failure');
  t.ok(answer.getChild('invalid-authzid'), answer.toString());
  const explicit = await peer.external('c.test');
  t.equal(explicit.name, 'success', 'the stream\'s own domain as authzid is accepted');
});

t.test('stanzas only for authenticated domain pairs: another local domain needs its own db:result', async (t) => {
  const peer = await carolServer();
  t.teardown(() => peer.destroy());
  // Authenticated for (c.test, b.test): conference.b.test is served here, but not yet a pair.
  peer.send("<presence from='carol@c.test/x' to='room@conference.b.test/carol' id='early'/>");
  t.equal(await peer.streamError(), 'invalid-from', 'refused before the pair is added');

  const again = await carolServer();
  t.teardown(() => again.destroy());
  again.send("<db:result xmlns:db='jabber:server:dialback' from='c.test' to='conference.b.test'>k</db:result>");
  const result = await again.next((el) => el.name === 'result');
  t.equal(result.attrs.type, 'valid', 'the certificate is enough to add the pair (XEP-0344)');
  // Bob makes a room here; carol's join through the new pair reaches him.
  bob.send("<presence to='pairs@conference.b.test/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
  await bob.next((el) => el.name === 'presence' && el.attrs.from === 'pairs@conference.b.test/bob');
  // An instant room (XEP-0045 §10.1.2): a new room stays locked to others until configured.
  bob.send("<iq type='set' to='pairs@conference.b.test' id='instant'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>");
  t.equal((await bob.next((el) => el.attrs.id === 'instant')).attrs.type, 'result');
  again.send("<presence from='carol@c.test/x' to='pairs@conference.b.test/carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>");
  const seen = await bob.next((el) => el.name === 'presence' && el.attrs.from === 'pairs@conference.b.test/carol');
  t.notOk(seen.attrs.type, 'carol joined: her stanza was taken');
  t.ok(await again.nothing((el) => el.name === 'error'), 'and her stream stays up');
  bob.send("<presence to='pairs@conference.b.test/bob' type='unavailable'/>");
});

t.test('an authenticated peer delivers; a spoofed from ends its stream', async (t) => {
  const peer = await carolServer();
  t.teardown(() => peer.destroy());
  peer.send("<message from='carol@c.test/x' to='bob@b.test/r1' id='ok1'><body>legit</body></message>");
  const got = await bob.next((el) => el.name === 'message' && el.attrs.id === 'ok1');
  t.equal(got.attrs.from, 'carol@c.test/x');
  peer.send("<message from='mallory@a.test/x' to='bob@b.test/r1' id='spoof'><body>I am a.test</body></message>");
  t.equal(await peer.streamError(), 'invalid-from');
  await t.rejects(bob.next((el) => el.name === 'message' && el.attrs.id === 'spoof', 400), 'the spoofed stanza was not delivered');
});

t.test('a peer over the stanza rate is slowed down, not cut off: everything arrives, in order', async (t) => {
  const peer = await carolServer();
  t.teardown(() => peer.destroy());
  const ids = Array.from({ length: 30 }, (_, i) => `rate${i}`);
  const sentAt = performance.now();
  peer.send(ids.map((id) => `<message from='carol@c.test/x' to='bob@b.test/r1' id='${id}'><body>${id}</body></message>`).join(''));
  const isRated = (el: { name: string; attrs: Record<string, string | undefined> }) => el.name === 'message' && ids.includes(el.attrs.id ?? '');
  const got: string[] = [];
  // 5 at once (the burst), then 20 a second: after `elapsed` ms at most 5 + elapsed / 50 are through.
  await new Promise((resolve) => setTimeout(resolve, 250));
  for (;;) {
    const el = await bob.next(isRated, 1).catch(() => undefined);
    if (!el) break;
    got.push(el.attrs.id!);
  }
  const elapsed = performance.now() - sentAt;
  const allowed = 5 + Math.ceil(elapsed / 50) + 1;
  t.ok(got.length <= allowed && got.length < ids.length, `held back past the burst (${got.length} through after ${elapsed.toFixed(0)} ms, at most ${allowed})`);
  while (got.length < ids.length) got.push((await bob.next(isRated, 5000)).attrs.id!);
  t.same(got, ids, 'all arrive, in order');
  t.notOk(peer.isClosed, 'the peer\'s stream stays open');
});

t.test('a Direct TLS connection that never starts TLS is dropped after handshake_timeout', async (t) => {
  const direct = await startTestServer({ hosts: ['e.test'], listen: `${S2S_LISTEN}\n    tls: true`, yaml: 's2s:\n  handshake_timeout: 300ms' });
  t.teardown(() => direct.close());
  const socket = net.connect(direct.ports('s2s')[0]!, '127.0.0.1');
  socket.on('error', () => undefined);
  const closed = new Promise<boolean>((resolve) => {
    socket.once('close', () => resolve(true));
    setTimeout(() => resolve(false), 5000).unref();
  });
  t.ok(await closed, 'the server closed the silent connection');
});

t.test('bad addressing and unauthenticated stanzas get stream errors', async (t) => {
  const peer = await carolServer();
  peer.send("<message from='carol@c.test/x' to='someone@elsewhere.test'><body>relay me</body></message>");
  t.equal(await peer.streamError(), 'host-unknown');
  peer.destroy();

  const anon = await RawPeer.dial(s2sPort, 'c.test', 'b.test');
  await anon.open();
  anon.send("<message from='carol@c.test/x' to='bob@b.test'><body>before TLS</body></message>");
  t.equal(await anon.streamError(), 'policy-violation', 'TLS first');
  anon.destroy();

  const untrusted = await RawPeer.dial(s2sPort, 'c.test', 'b.test');
  await untrusted.open();
  const selfSigned = issueLeaf(['c.test'], { selfSigned: true });
  const features = await untrusted.secure({ cert: selfSigned.chainPem, key: selfSigned.keyPem });
  t.notOk(features.getChild('mechanisms'), 'no EXTERNAL for a certificate B does not trust');
  t.ok(features.getChild('dialback', 'urn:xmpp:features:dialback'), 'dialback is offered instead');
  untrusted.send("<message from='carol@c.test/x' to='bob@b.test'><body>unauthenticated</body></message>");
  t.equal(await untrusted.streamError(), 'not-authorized');
  untrusted.destroy();

  const wrongHost = await RawPeer.dial(s2sPort, 'c.test', 'nowhere.test');
  wrongHost.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' from='c.test' to='nowhere.test' version='1.0'>`);
  t.equal(await wrongHost.streamError(), 'host-unknown');
  wrongHost.destroy();
});

t.test('remote presence is withdrawn when the stream that carried it dies', async (t) => {
  const roster = b.server.host('b.test')!.services.get('roster') as RosterApi;
  await roster.upsert('bob@b.test', { jid: 'carol@c.test', groups: [], subscription: 'both' });
  const peer = await carolServer();
  peer.send("<presence from='carol@c.test/x' to='bob@b.test'/>");
  const online = await bob.next((el) => el.name === 'presence' && el.attrs.from === 'carol@c.test/x');
  t.equal(online.attrs.type, undefined);
  peer.destroy();
  const offline = await bob.next((el) => el.name === 'presence' && el.attrs.from === 'carol@c.test/x');
  t.equal(offline.attrs.type, 'unavailable', 'bob sees carol go offline with her server');
});

t.test('unreachable and silent servers bounce within setup_timeout', async (t) => {
  bob.send("<message to='x@dead.test' id='dead1'><body>anyone?</body></message>");
  const dead = await bob.next((el) => el.name === 'message' && el.attrs.id === 'dead1');
  t.ok(dead.getChild('error')?.getChild('remote-server-not-found', STANZAS), String(dead));
  bob.send("<message to='x@silent.test' id='silent1'><body>hello?</body></message>");
  bob.send("<iq to='x@silent.test' type='get' id='silent2'><ping xmlns='urn:xmpp:ping'/></iq>");
  const timedOut = await bob.next((el) => el.name === 'message' && el.attrs.id === 'silent1');
  t.ok(timedOut.getChild('error')?.getChild('remote-server-timeout', STANZAS), String(timedOut));
  const iq = await bob.next((el) => el.name === 'iq' && el.attrs.id === 'silent2');
  t.ok(iq.getChild('error')?.getChild('remote-server-timeout', STANZAS), 'the queued iq bounced too');
  // Subscription requests are dropped rather than bounced (RFC 6121 §3).
  bob.send("<presence to='x@dead.test' type='subscribe'/>");
  await t.rejects(bob.next((el) => el.name === 'presence' && el.attrs.from === 'x@dead.test', 1500));
});

t.test('the per-address limit of the s2s listener', async (t) => {
  const limited = await startTestServer({ hosts: ['d.test'], listen: `${S2S_LISTEN}\n    max_connections_per_ip: 2` });
  t.teardown(() => limited.close());
  const port = limited.ports('s2s')[0]!;
  const first = await RawPeer.dial(port, 'c.test', 'd.test');
  const second = await RawPeer.dial(port, 'c.test', 'd.test');
  t.teardown(() => {
    first.destroy();
    second.destroy();
  });
  t.ok((await first.open()).getChild('starttls'), 'first stream served');
  t.ok((await second.open()).getChild('starttls'), 'second stream served');
  const third = await RawPeer.dial(port, 'c.test', 'd.test');
  await t.rejects(third.open(), 'the third connection from the same address gets no stream');
  await third.closed(2000);
  t.ok(third.isClosed, 'and is closed');
});

t.test('idle streams are closed and reopened on demand', async (t) => {
  const pair = await startPair({ aS2s: '  idle_timeout: 300ms', bS2s: '  idle_timeout: 300ms' });
  t.teardown(() => pair.close());
  await pair.a.register('alice', 'pw');
  await pair.b.register('bob', 'pw');
  const alice = await RawClient.login(pair.a.c2sPort, 'alice', 'pw', { host: 'a.test', resource: 'r1', presence: false });
  const bob2 = await RawClient.login(pair.b.c2sPort, 'bob', 'pw', { host: 'b.test', resource: 'r1', presence: false });
  t.teardown(() => {
    alice.destroy();
    bob2.destroy();
  });
  alice.send("<message to='bob@b.test/r1' id='i1'><body>one</body></message>");
  await bob2.next((el) => el.name === 'message' && el.attrs.id === 'i1');
  t.match(await pair.a.server.stats(), /s2s streams: out=1/);
  let stats = '';
  for (let i = 0; i < 50; i++) {
    stats = await pair.a.server.stats();
    if (/s2s streams: out=0 in=0/.test(stats) && /s2s streams: out=\d+ in=0/.test(await pair.b.server.stats())) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.match(stats, /s2s streams: out=0 in=0/, 'the idle stream was closed');
  alice.send("<message to='bob@b.test/r1' id='i2'><body>two</body></message>");
  const again = await bob2.next((el) => el.name === 'message' && el.attrs.id === 'i2');
  t.equal(again.getChildText('body'), 'two', 'a new stream carries the next message');
});
