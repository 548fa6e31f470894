// SCRAM-SHA-512 and the -PLUS mechanisms over a real STARTTLS stream: the offer (XEP-0440 types,
// stable between logins, tls-exporter only on TLS 1.3), bound logins with both binding types, and
// the refusals: downgrade (`y`), unsupported or unoffered types, data from another channel.
import { createHash } from 'node:crypto';
import t from 'tap';
import { tlsLogin, type TlsLoginOptions } from '../helpers/scram-client.js';
import { startServerWithAuth } from '../helpers/scram-client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer();
t.teardown(() => srv.close());
await srv.register('alice', 'pässwörd');

const login = (o: Partial<TlsLoginOptions>) =>
  tlsLogin({ port: srv.c2sPort, user: 'alice', password: 'pässwörd', mechanism: 'SCRAM-SHA-512', ...o });

const ALL = ['SCRAM-SHA-512-PLUS', 'SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-512', 'SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'];

t.test('the offer on TLS 1.3: every mechanism, both binding types, the same every time', async (t) => {
  const first = await login({ mechanism: 'PLAIN' });
  t.equal(first.protocol, 'TLSv1.3');
  t.same(first.mechanisms, ALL, 'strongest first, -PLUS included');
  t.same(first.cbTypes, ['tls-exporter', 'tls-server-end-point']);
  for (let i = 0; i < 3; i++) {
    const again = await login({ mechanism: 'PLAIN', password: i === 1 ? 'wrong' : 'pässwörd' });
    t.same([again.mechanisms, again.cbTypes], [first.mechanisms, first.cbTypes], `login ${i + 2} sees the same offer`);
  }
});

t.test('the offer on TLS 1.2: -PLUS with tls-server-end-point only', async (t) => {
  const r = await login({ maxVersion: 'TLSv1.2', mechanism: 'SCRAM-SHA-256-PLUS', cbType: 'tls-server-end-point' });
  t.equal(r.protocol, 'TLSv1.2');
  t.same(r.mechanisms, ALL);
  t.same(r.cbTypes, ['tls-server-end-point'], 'no tls-exporter without TLS 1.3 (RFC 9266)');
  t.same([r.ok, r.verified], [true, true], 'a bound login on TLS 1.2');
  const exporter = await login({ maxVersion: 'TLSv1.2', mechanism: 'SCRAM-SHA-256-PLUS', cbType: 'tls-exporter' });
  t.same([exporter.ok, exporter.condition], [false, 'malformed-request'], 'tls-exporter refused on TLS 1.2');
  t.match(exporter.text, /tls-exporter is not supported here \(offered: tls-server-end-point\)/);
});

t.test('SCRAM-SHA-512 logs in and the server proves itself', async (t) => {
  const r = await login({});
  t.same([r.ok, r.verified], [true, true]);
  const wrong = await login({ password: 'nope' });
  t.same([wrong.ok, wrong.condition], [false, 'not-authorized']);
});

for (const mechanism of ['SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256-PLUS', 'SCRAM-SHA-512-PLUS']) {
  for (const cbType of ['tls-exporter', 'tls-server-end-point']) {
    t.test(`${mechanism} bound with ${cbType}`, async (t) => {
      const r = await login({ mechanism, cbType });
      t.same([r.ok, r.verified], [true, true]);
    });
  }
}

t.test('tls-server-end-point is SHA-256 of the certificate the client saw (RFC 5929)', async (t) => {
  // The generated certificate is signed with SHA-256, so that is the hash; computed here from
  // the certificate as received, then sent as the binding data explicitly.
  const probe = await login({ mechanism: 'PLAIN' });
  const digest = createHash('sha256').update(probe.peerCert).digest();
  t.ok((await login({ mechanism: 'SCRAM-SHA-256-PLUS', cbType: 'tls-server-end-point', cbData: digest })).ok);
  const sha384 = createHash('sha384').update(probe.peerCert).digest();
  const r = await login({ mechanism: 'SCRAM-SHA-256-PLUS', cbType: 'tls-server-end-point', cbData: sha384 });
  t.same([r.ok, r.condition], [false, 'not-authorized'], 'another hash is another channel');
});

t.test('refusals', async (t) => {
  const downgrade = await login({ mechanism: 'SCRAM-SHA-256', flag: 'y' });
  t.same([downgrade.ok, downgrade.condition], [false, 'not-authorized'], '`y` while -PLUS was offered is a downgrade');
  t.match(downgrade.text, /downgrade/);
  const unbound = await login({ mechanism: 'SCRAM-SHA-256' });
  t.same([unbound.ok, unbound.verified], [true, true], '`n` (a client that cannot bind) may use the plain variant');
  // tls-unique is never offered, but accepted when a client insists (stock slixmpp does).
  const unique = await login({ mechanism: 'SCRAM-SHA-256-PLUS', cbType: 'tls-unique' });
  t.same([unique.ok, unique.verified], [true, true], 'tls-unique with the right Finished message');
  const uniqueBad = await login({ mechanism: 'SCRAM-SHA-256-PLUS', cbType: 'tls-unique', cbData: Buffer.alloc(12, 1) });
  t.same([uniqueBad.ok, uniqueBad.condition], [false, 'not-authorized'], 'tls-unique of another channel');
  const unknownType = await login({ mechanism: 'SCRAM-SHA-256-PLUS', cbType: 'tls-bogus' });
  t.same([unknownType.ok, unknownType.condition], [false, 'malformed-request'], 'an unknown binding type');
  const mitm = await login({ mechanism: 'SCRAM-SHA-512-PLUS', cbType: 'tls-exporter', cbData: Buffer.alloc(32, 7) });
  t.same([mitm.ok, mitm.condition], [false, 'not-authorized'], 'binding data of another channel');
});

t.test('without channel binding types: no -PLUS, no XEP-0440 feature, `y` accepted', async (t) => {
  const other = await startServerWithAuth('  channel_binding: []');
  t.teardown(() => other.close());
  await other.register('alice', 'pässwörd');
  const r = await tlsLogin({ port: other.c2sPort, user: 'alice', password: 'pässwörd', mechanism: 'SCRAM-SHA-256', flag: 'y' });
  t.same(r.mechanisms, ['SCRAM-SHA-512', 'SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']);
  t.same(r.cbTypes, []);
  t.same([r.ok, r.verified], [true, true], 'with nothing to bind to, `y` is the truth, not a downgrade');
  const plus = await tlsLogin({ port: other.c2sPort, user: 'alice', password: 'pässwörd', mechanism: 'SCRAM-SHA-256-PLUS', cbType: 'tls-exporter' });
  t.same([plus.ok, plus.condition], [false, 'invalid-mechanism'], '-PLUS is not offered, so not accepted');
});

t.test('the configured order and subset is what is offered', async (t) => {
  const other = await startServerWithAuth('  mechanisms: [SCRAM-SHA-256-PLUS, SCRAM-SHA-256, PLAIN]\n  channel_binding: [tls-server-end-point]');
  t.teardown(() => other.close());
  const r = await tlsLogin({ port: other.c2sPort, user: 'x', password: 'y', mechanism: 'PLAIN' });
  t.same(r.mechanisms, ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-256', 'PLAIN']);
  t.same(r.cbTypes, ['tls-server-end-point']);
});
