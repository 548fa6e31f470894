// How server streams authenticate: SASL EXTERNAL when both trust the certificates (a test CA),
// dialback with untrusted self-signed certificates (federation.test.ts), Direct TLS listeners,
// and a `certificate` policy that refuses dialback: the sender gets remote-server-not-found and
// nothing arrives.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { writeTestCerts } from '../helpers/test-ca.js';
import { RawClient } from '../helpers/raw-client.js';
import { startPair, type Pair } from '../helpers/s2s-pair.js';
import { RawPeer } from '../helpers/s2s-raw-peer.js';

const certDir = mkdtempSync(path.join(tmpdir(), 'parley-s2s-certs-'));
t.teardown(() => rmSync(certDir, { recursive: true, force: true }));
const aCerts = writeTestCerts(certDir, ['a.test', '*.a.test']);
const bCerts = writeTestCerts(certDir, ['b.test', '*.b.test']);

const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

/** Alice on A and Bob on B, logged in; they and the pair are closed when the test ends. */
async function users(t: { teardown(fn: () => unknown): void }, pair: Pair): Promise<{ alice: RawClient; bob: RawClient }> {
  t.teardown(() => pair.close());
  await pair.a.register('alice', 'pw');
  await pair.b.register('bob', 'pw');
  const alice = await RawClient.login(pair.a.c2sPort, 'alice', 'pw', { host: 'a.test', resource: 'r1', presence: false });
  const bob = await RawClient.login(pair.b.c2sPort, 'bob', 'pw', { host: 'b.test', resource: 'r1', presence: false });
  t.teardown(() => {
    alice.destroy();
    bob.destroy();
  });
  return { alice, bob };
}

t.test('SASL EXTERNAL when each trusts the other\'s CA', async (t) => {
  const pair = await startPair({
    aYaml: `certfiles: [${JSON.stringify(aCerts.combinedFile)}]`,
    bYaml: `certfiles: [${JSON.stringify(bCerts.combinedFile)}]`,
    aS2s: `  ca_files: [${JSON.stringify(aCerts.caFile)}]\n  system_cas: false`,
    bS2s: `  ca_files: [${JSON.stringify(bCerts.caFile)}]\n  system_cas: false`,
  });
  const { alice, bob } = await users(t, pair);
  alice.send("<message to='bob@b.test/r1' id='e1'><body>over EXTERNAL</body></message>");
  const got = await bob.next((el) => el.name === 'message' && el.attrs.id === 'e1');
  t.equal(got.getChildText('body'), 'over EXTERNAL');
  bob.send("<message to='alice@a.test/r1' id='e2'><body>back</body></message>");
  await alice.next((el) => el.name === 'message' && el.attrs.id === 'e2');
  t.match(await pair.a.server.stats(), /s2s out\ta\.test -> b\.test\tstate=ready\tauth=external/);
  t.match(await pair.b.server.stats(), /s2s in\ta\.test\(external\) -> b\.test/);
  t.match(await pair.b.server.stats(), /s2s out\tb\.test -> a\.test\tstate=ready\tauth=external/);
});

t.test('Direct TLS listeners (XEP-0368) with dialback', async (t) => {
  const pair = await startPair({ listenTls: true });
  const { alice, bob } = await users(t, pair);
  alice.send("<message to='bob@b.test/r1' id='d1'><body>direct</body></message>");
  const got = await bob.next((el) => el.name === 'message' && el.attrs.id === 'd1');
  t.equal(got.attrs.from, 'alice@a.test/r1');
  t.match(await pair.a.server.stats(), /auth=dialback/);
});

t.test('dialback refused by a certificate policy', async (t) => {
  // B demands valid certificates from a.test; A presents its self-signed one.
  const pair = await startPair({ bS2s: '  domains:\n    a.test: { auth: certificate }' });
  const { alice, bob } = await users(t, pair);
  alice.send("<message to='bob@b.test/r1' id='x1'><body>let me in</body></message>");
  const bounce = await alice.next((el) => el.name === 'message' && el.attrs.id === 'x1');
  t.equal(bounce.attrs.type, 'error');
  t.equal(bounce.attrs.from, 'bob@b.test/r1');
  t.ok(bounce.getChild('error')?.getChild('remote-server-not-found', STANZAS), String(bounce));
  t.ok(await bob.nothing((el) => el.name === 'message' && el.attrs.id === 'x1', 500), 'bob got nothing');
  // The other way, B does not even try dialback towards a domain it requires certificates from.
  bob.send("<message to='alice@a.test/r1' id='x2'><body>hello?</body></message>");
  const bounce2 = await bob.next((el) => el.name === 'message' && el.attrs.id === 'x2');
  t.ok(bounce2.getChild('error')?.getChild('remote-server-not-found', STANZAS), String(bounce2));
  t.ok(await alice.nothing((el) => el.name === 'message' && el.attrs.id === 'x2', 500), 'alice got nothing');
});

t.test('dialback: a forged key is found invalid by the authoritative server', async (t) => {
  const pair = await startPair();
  t.teardown(() => pair.close());
  // A raw peer claims to be a.test on B; B asks a.test's real server (A) about the key.
  const forger = await RawPeer.dial(pair.b.ports('s2s')[0]!, 'a.test', 'b.test');
  t.teardown(() => forger.destroy());
  await forger.open();
  const features = await forger.secure();
  t.ok(features.getChild('dialback', 'urn:xmpp:features:dialback')?.getChild('errors'), 'dialback with errors is offered');
  forger.send("<db:result from='a.test' to='b.test'>0123456789abcdef</db:result>");
  const result = await forger.next((el) => el.name === 'result');
  t.equal(result.attrs.type, 'invalid');
  t.equal(await forger.streamError(), 'not-authorized');
  // A target domain that B does not serve gets a dialback error, not a verification.
  const other = await RawPeer.dial(pair.b.ports('s2s')[0]!, 'a.test', 'b.test');
  t.teardown(() => other.destroy());
  await other.open();
  await other.secure();
  other.send("<db:result from='a.test' to='elsewhere.test'>0123</db:result>");
  const refused = await other.next((el) => el.name === 'result');
  t.equal(refused.attrs.type, 'error');
  t.ok(refused.getChild('error')?.getChild('item-not-found', STANZAS), String(refused));
});

t.test('dialback: the authoritative side answers db:verify', async (t) => {
  const pair = await startPair();
  t.teardown(() => pair.close());
  const asker = await RawPeer.dial(pair.a.ports('s2s')[0]!, 'b.test', 'a.test');
  t.teardown(() => asker.destroy());
  await asker.open();
  await asker.secure();
  asker.send("<db:verify from='b.test' to='a.test' id='s1'>not-a-key-we-made</db:verify>");
  const verdict = await asker.next((el) => el.name === 'verify');
  t.same([verdict.attrs.type, verdict.attrs.from, verdict.attrs.to, verdict.attrs.id], ['invalid', 'a.test', 'b.test', 's1']);
  asker.send("<db:verify from='b.test' to='nowhere.test' id='s2'>x</db:verify>");
  const error = await asker.next((el) => el.name === 'verify' && el.attrs.id === 's2');
  t.equal(error.attrs.type, 'error');
  t.ok(error.getChild('error')?.getChild('item-not-found', STANZAS));
});
