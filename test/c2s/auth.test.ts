// SASL over a real STARTTLS stream: every mechanism, wrong passwords, and TLS enforcement.
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { ScramClient } from '../helpers/scram-client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer();
t.teardown(() => srv.close());
await srv.register('alice', 'secret pässword');

async function secured(): Promise<{ c: RawClient; mechanisms: string[] }> {
  const c = await RawClient.connect(srv.c2sPort);
  await c.open();
  const features = await c.starttls();
  const mechanisms = features.getChild('mechanisms')!.getChildren('mechanism').map((m) => m.getText());
  return { c, mechanisms };
}

async function scramLogin(mechanism: string, user: string, password: string): Promise<{ ok: boolean; condition?: string; verified?: boolean }> {
  const { c } = await secured();
  try {
    const scram = new ScramClient(mechanism, user, password);
    c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='${mechanism}'>${scram.first()}</auth>`);
    const challenge = await c.next((el) => el.name === 'challenge' || el.name === 'failure');
    if (challenge.name === 'failure') return { ok: false, condition: challenge.children.find((x) => typeof x !== 'string' && x.name !== 'text')?.toString() };
    c.send(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${scram.final(challenge.getText())}</response>`);
    const outcome = await c.next((el) => el.name === 'success' || el.name === 'failure');
    if (outcome.name === 'failure') {
      const cond = outcome.children.find((x): x is import('ltx').Element => typeof x !== 'string' && x.name !== 'text');
      return { ok: false, condition: cond?.name };
    }
    return { ok: true, verified: scram.verify(outcome.getText()) };
  } finally {
    c.destroy();
  }
}

t.test('offered mechanisms after TLS', async (t) => {
  const { c, mechanisms } = await secured();
  c.destroy();
  t.same(mechanisms.sort(), ['PLAIN', 'SCRAM-SHA-1', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256', 'SCRAM-SHA-256-PLUS', 'SCRAM-SHA-512', 'SCRAM-SHA-512-PLUS']);
});

for (const mech of ['SCRAM-SHA-1', 'SCRAM-SHA-256']) {
  t.test(`${mech} succeeds and the server proves itself`, async (t) => {
    t.same(await scramLogin(mech, 'alice', 'secret pässword'), { ok: true, verified: true });
  });
  t.test(`${mech} with a wrong password`, async (t) => {
    t.same(await scramLogin(mech, 'alice', 'wrong'), { ok: false, condition: 'not-authorized' });
  });
  t.test(`${mech} with an unknown user`, async (t) => {
    t.same(await scramLogin(mech, 'nobody', 'x'), { ok: false, condition: 'not-authorized' });
  });
}

t.test('PLAIN succeeds and binds; wrong password fails', async (t) => {
  const c = await RawClient.login(srv.c2sPort, 'alice', 'secret pässword', { presence: false });
  t.match(c.jid, /^alice@localhost\/.+/);
  c.end();
  const { c: c2 } = await secured();
  const failure = await c2.authPlain('alice', 'nope');
  t.equal(failure.name, 'failure');
  t.ok(failure.getChild('not-authorized'));
  c2.destroy();
});

t.test('STARTTLS is required: features, auth and stanzas before TLS', async (t) => {
  const c = await RawClient.connect(srv.c2sPort);
  const features = await c.open();
  const starttls = features.getChild('starttls', 'urn:ietf:params:xml:ns:xmpp-tls');
  t.ok(starttls?.getChild('required'), 'starttls is marked required');
  t.notOk(features.getChild('mechanisms'), 'no SASL before TLS');
  c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\0alice\0secret pässword').toString('base64')}</auth>`);
  const failure = await c.nextNamed('failure');
  t.ok(failure.getChild('encryption-required'));
  c.send("<message to='alice@localhost'><body>hi</body></message>");
  t.equal(await c.streamError(), 'policy-violation');
  await c.closed();
});

t.test('unknown mechanism, bad base64 and abort', async (t) => {
  const { c } = await secured();
  c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='DIGEST-MD5'/>");
  t.ok((await c.nextNamed('failure')).getChild('invalid-mechanism'));
  c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>!!notbase64</auth>");
  t.ok((await c.nextNamed('failure')).getChild('incorrect-encoding'));
  c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>${new ScramClient('SCRAM-SHA-1', 'alice', 'x').first()}</auth>`);
  await c.nextNamed('challenge');
  c.send("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
  t.ok((await c.nextNamed('failure')).getChild('aborted'));
  c.destroy();
});

t.test('repeated failures close the stream', async (t) => {
  const { c } = await secured();
  for (let i = 0; i < 5; i++) await c.authPlain('alice', 'bad' + i);
  t.equal(await c.streamError(), 'policy-violation');
});

t.test('stanzas before authentication are refused', async (t) => {
  const { c } = await secured();
  c.send("<message to='alice@localhost'><body>hi</body></message>");
  t.equal(await c.streamError(), 'not-authorized');
});

t.test('unknown host and bad namespace in the stream header', async (t) => {
  const c = await RawClient.connect(srv.c2sPort);
  c.send("<?xml version='1.0'?><stream:stream to='elsewhere.example' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
  t.equal(await c.streamError(), 'host-unknown');
  const d = await RawClient.connect(srv.c2sPort);
  d.send("<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>");
  t.equal(await d.streamError(), 'invalid-namespace');
});
