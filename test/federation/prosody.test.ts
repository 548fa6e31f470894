// Federation with a real Prosody (Debian's 0.12), issue 10's acceptance: a Parley user and a
// Prosody user subscribe to each other, see each other's presence and chat both ways; a Parley
// user joins a room on Prosody's MUC service; with certificates from a CA both trust, the streams
// use SASL EXTERNAL both ways; with untrusted certificates and dialback allowed, dialback; with
// dialback disallowed by Prosody, the stream is refused and the Parley sender gets
// remote-server-not-found.
//
// Parley listens for s2s on 127.0.0.2:5269, where Prosody's resolver finds parley.test (the
// Prosody harness gives it a hosts file of its own); Parley reaches Prosody on 127.0.0.3 through
// static routes. The scenarios run one after the other and reuse those addresses.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { xml } from '@xmpp/client';
import type { Element } from 'ltx';
import t from 'tap';
import { createLogger } from '../../lib/log.js';
import { nextStanza, prosodyClient, prosodyMissing, startProsody, type ProsodyServer, type TestLike, type XmppClient, type XmppStanza } from '../helpers/prosody.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { writeTestCerts } from '../helpers/test-ca.js';

// xmpp.js cannot be given the test CA (see prosodyClient); the federation streams are what these
// tests check, and they verify certificates through each server's own configuration.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

const PARLEY_IP = '127.0.0.2';
const PROSODY_IP = '127.0.0.3';
const PARLEY = 'parley.test';
const PROSODY = 'prosody.test';
const STANZA_WAIT_MS = 20_000;
const IM_MODULES = '  disco: {}\n  ping: {}\n  roster: {}\n  presence: {}\n  muc: {}';

const certDir = mkdtempSync(path.join(tmpdir(), 'parley-federation-certs-'));
t.teardown(() => rmSync(certDir, { recursive: true, force: true }));

interface ParleyOptions {
  t: TestLike;
  prosody: ProsodyServer;
  /** Parley's certificate: from the test CA Prosody trusts, or self-signed. */
  selfSigned: boolean;
  /** Trust the test CA for Prosody's certificate. */
  trustCa: boolean;
}

interface Parley {
  srv: TestServer;
  logText(): string;
}

/** Parley for parley.test with an s2s listener where Prosody's resolver sends it. */
async function startParley(o: ParleyOptions): Promise<Parley> {
  const certs = writeTestCerts(path.join(certDir, o.selfSigned ? 'self' : 'ca'), [PARLEY, `conference.${PARLEY}`], { selfSigned: o.selfSigned });
  const lines: string[] = [];
  const log = createLogger({ level: 'debug', format: 'json', write: (l) => lines.push(l) });
  const route = `{ host: ${o.prosody.ip}, port: ${o.prosody.s2sPort} }`;
  const srv = await startTestServer({
    hosts: [PARLEY],
    log,
    listen: `  - port: 5269\n    ip: ${PARLEY_IP}\n    module: s2s`,
    modules: IM_MODULES,
    yaml: [
      `certfiles: [${JSON.stringify(certs.combinedFile)}]`,
      's2s:',
      '  system_cas: false',
      `  ca_files: [${o.trustCa ? JSON.stringify(certs.caFile) : ''}]`,
      '  setup_timeout: 15s',
      '  routes:',
      `    ${PROSODY}: ${route}`,
      `    conference.${PROSODY}: ${route}`,
    ].join('\n'),
  });
  await srv.register('alice', 'pw');
  const logText = () => lines.filter((l) => /s2s|dialback|EXTERNAL|stream/i.test(l)).join('\n');
  o.t.teardown(async () => {
    if (!o.t.passing()) o.t.comment(`Parley s2s log:\n${logText()}`);
    await srv.close();
  });
  return { srv, logText };
}

function prosodyFor(t: TestLike, secureAuth: boolean): Promise<ProsodyServer> {
  return startProsody({
    t,
    domain: PROSODY,
    ip: PROSODY_IP,
    hosts: { [PARLEY]: PARLEY_IP, [`conference.${PARLEY}`]: PARLEY_IP },
    secureAuth,
    users: [{ user: 'bob', password: 'pw' }],
  });
}

async function loginBoth(t: TestLike, parley: Parley, prosody: ProsodyServer): Promise<{ alice: RawClient; bob: XmppClient }> {
  const alice = await RawClient.login(parley.srv.c2sPort, 'alice', 'pw', { host: PARLEY, resource: 'r1', presence: false });
  const bob = prosodyClient(prosody, 'bob', 'pw', 'r1');
  // Before start: a client whose start failed keeps reconnecting until it is stopped.
  t.teardown(async () => {
    alice.destroy();
    await bob.stop().catch(() => undefined);
  });
  await bob.start();
  return { alice, bob };
}

const fromAlice = `alice@${PARLEY}`;
const toBob = `bob@${PROSODY}`;
const bareOf = (jid: unknown) => String(jid ?? '').split('/')[0];
const aliceGets = (alice: RawClient, pred: (el: Element) => boolean) => alice.next(pred, STANZA_WAIT_MS);
const bobGets = (bob: XmppClient, pred: (st: XmppStanza) => boolean) => nextStanza(bob, pred, STANZA_WAIT_MS);

async function run(): Promise<void> {
  t.test('trusted CA: subscriptions, presence, chat and MUC over SASL EXTERNAL', async (t) => {
    const prosody = await prosodyFor(t, false);
    const parley = await startParley({ t, prosody, selfSigned: false, trustCa: true });
    const { alice, bob } = await loginBoth(t, parley, prosody);

    t.test('subscriptions both ways', async (t) => {
      // As clients do: fetch the roster, then come online. Servers deliver subscription
      // requests to available resources (RFC 6121 §3.1.3), and Prosody sends approvals only to
      // resources that asked for the roster ("interested" ones, RFC 6121 §2.1.6).
      alice.send("<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>");
      await aliceGets(alice, (el) => el.name === 'iq' && el.attrs.id === 'r0');
      await bob.iqCaller.request(xml('iq', { type: 'get' }, xml('query', { xmlns: 'jabber:iq:roster' })));
      alice.send('<presence/>');
      await bob.send(xml('presence'));
      const subscribe = bobGets(bob, (st) => st.is('presence') && st.attrs.type === 'subscribe');
      alice.send(`<presence to='${toBob}' type='subscribe'/>`);
      t.equal(bareOf((await subscribe).attrs.from), fromAlice, 'Prosody user gets the request from Parley');
      const subscribed = aliceGets(alice, (el) => el.name === 'presence' && el.attrs.type === 'subscribed');
      const reverse = aliceGets(alice, (el) => el.name === 'presence' && el.attrs.type === 'subscribe');
      await bob.send(xml('presence', { to: fromAlice, type: 'subscribed' }));
      await bob.send(xml('presence', { to: fromAlice, type: 'subscribe' }));
      t.equal(bareOf((await subscribed).attrs.from), toBob, 'Parley user is told of the approval');
      t.equal(bareOf((await reverse).attrs.from), toBob, 'and gets the reverse request');
      const approved = bobGets(bob, (st) => st.is('presence') && st.attrs.type === 'subscribed');
      alice.send(`<presence to='${toBob}' type='subscribed'/>`);
      t.equal(bareOf((await approved).attrs.from), fromAlice);
    });

    t.test("each sees the other's presence", async (t) => {
      const status = (el: Element | XmppStanza) => el.getChildText('status');
      const bobSeesAlice = bobGets(bob, (st) => st.is('presence') && !st.attrs.type && bareOf(st.attrs.from) === fromAlice && status(st) === 'from Parley');
      alice.send('<presence><show>away</show><status>from Parley</status></presence>');
      t.equal((await bobSeesAlice).getChildText('show'), 'away', 'Prosody user sees the Parley user');
      const aliceSeesBob = aliceGets(alice, (el) => el.name === 'presence' && !el.attrs.type && bareOf(el.attrs.from) === toBob && status(el) === 'from Prosody');
      await bob.send(xml('presence', {}, xml('show', {}, 'dnd'), xml('status', {}, 'from Prosody')));
      t.equal((await aliceSeesBob).getChildText('show'), 'dnd', 'Parley user sees the Prosody user');
    });

    t.test('messages both ways', async (t) => {
      const atBob = bobGets(bob, (st) => st.is('message') && st.attrs.id === 'p1');
      alice.send(`<message to='${toBob}/r1' type='chat' id='p1'><body>hello Prosody ✓</body></message>`);
      const got = await atBob;
      t.equal(got.attrs.from, `${fromAlice}/r1`);
      t.equal(got.getChildText('body'), 'hello Prosody ✓');
      const atAlice = aliceGets(alice, (el) => el.name === 'message' && el.attrs.id === 'p2');
      await bob.send(xml('message', { to: `${fromAlice}/r1`, type: 'chat', id: 'p2' }, xml('body', {}, 'hello Parley & co')));
      const back = await atAlice;
      t.equal(back.attrs.from, `${toBob}/r1`);
      t.equal(back.getChildText('body'), 'hello Parley & co');
    });

    t.test('a Parley user joins a room on Prosody and chats there', async (t) => {
      const room = `lounge@${prosody.mucDomain}`;
      const bobIn = bobGets(bob, (st) => st.is('presence') && st.attrs.from === `${room}/bob`);
      await bob.send(xml('presence', { to: `${room}/bob` }, xml('x', { xmlns: 'http://jabber.org/protocol/muc' })));
      await bobIn;
      const aliceIn = aliceGets(alice, (el) => el.name === 'presence' && el.attrs.from === `${room}/alice`);
      const bobSeesAlice = bobGets(bob, (st) => st.is('presence') && st.attrs.from === `${room}/alice`);
      alice.send(`<presence to='${room}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>`);
      const self = await aliceIn;
      t.notOk(self.attrs.type, 'joined');
      t.ok(self.getChild('x', 'http://jabber.org/protocol/muc#user')?.getChildren('status').some((s) => s.attrs.code === '110'), 'self-presence');
      await bobSeesAlice;
      const atBob = bobGets(bob, (st) => st.is('message') && st.attrs.type === 'groupchat' && st.attrs.from === `${room}/alice`);
      const echo = aliceGets(alice, (el) => el.name === 'message' && el.attrs.type === 'groupchat' && el.attrs.from === `${room}/alice`);
      alice.send(`<message to='${room}' type='groupchat' id='g1'><body>hi room</body></message>`);
      t.equal((await atBob).getChildText('body'), 'hi room');
      t.equal((await echo).getChildText('body'), 'hi room', 'the room reflects it to its sender');
      const fromBob = aliceGets(alice, (el) => el.name === 'message' && el.attrs.type === 'groupchat' && el.attrs.from === `${room}/bob`);
      await bob.send(xml('message', { to: room, type: 'groupchat', id: 'g2' }, xml('body', {}, 'welcome')));
      t.equal((await fromBob).getChildText('body'), 'welcome');
    });

    t.test('both directions authenticated with SASL EXTERNAL', async (t) => {
      const stats = await parley.srv.server.stats();
      t.match(stats, /s2s out\tparley\.test -> prosody\.test\tstate=ready\tauth=external/, 'Parley to Prosody');
      t.match(stats, /s2s in\t[^\n]*prosody\.test\(external\)[^\n]* -> parley\.test/, 'Prosody to Parley');
      t.match(prosody.logText(), /Accepting SASL EXTERNAL identity from parley\.test/, "Prosody's log: Parley authenticated with its certificate");
      t.match(prosody.logText(), /SASL EXTERNAL with parley\.test succeeded/, "Prosody's log: its own EXTERNAL towards Parley");
      t.notMatch(stats, /auth=dialback|\(dialback\)/, 'no dialback');
    });
  });

  t.test('untrusted self-signed certificates, dialback allowed: dialback', async (t) => {
    const prosody = await prosodyFor(t, false);
    const parley = await startParley({ t, prosody, selfSigned: true, trustCa: false });
    const { alice, bob } = await loginBoth(t, parley, prosody);
    const atBob = bobGets(bob, (st) => st.is('message') && st.attrs.id === 'd1');
    alice.send(`<message to='${toBob}/r1' type='chat' id='d1'><body>over dialback</body></message>`);
    t.equal((await atBob).getChildText('body'), 'over dialback');
    const atAlice = aliceGets(alice, (el) => el.name === 'message' && el.attrs.id === 'd2');
    await bob.send(xml('message', { to: `${fromAlice}/r1`, type: 'chat', id: 'd2' }, xml('body', {}, 'dialback back')));
    t.equal((await atAlice).getChildText('body'), 'dialback back');
    const stats = await parley.srv.server.stats();
    t.match(stats, /s2s out\tparley\.test -> prosody\.test\tstate=ready\tauth=dialback/, 'Parley to Prosody');
    t.match(stats, /s2s in\t[^\n]*prosody\.test\(dialback\)[^\n]* -> parley\.test/, 'Prosody to Parley');
    t.notMatch(stats, /auth=external|\(external\)/, 'no SASL EXTERNAL');
    t.match(prosody.logText(), /verified dialback key\.\.\. it is valid/, "Prosody's log: it answered Parley's verification");
    t.notMatch(prosody.logText(), /Accepting SASL EXTERNAL/);
  });

  t.test('dialback disallowed by Prosody and an untrusted certificate: refused', async (t) => {
    const prosody = await prosodyFor(t, true);
    const parley = await startParley({ t, prosody, selfSigned: true, trustCa: false });
    const { alice, bob } = await loginBoth(t, parley, prosody);
    alice.send(`<message to='${toBob}/r1' type='chat' id='x1'><body>let me in</body></message>`);
    const bounce = await aliceGets(alice, (el) => el.name === 'message' && el.attrs.id === 'x1');
    t.equal(bounce.attrs.type, 'error');
    t.equal(bounce.attrs.from, `${toBob}/r1`);
    t.ok(bounce.getChild('error')?.getChild('remote-server-not-found', 'urn:ietf:params:xml:ns:xmpp-stanzas'), 'remote-server-not-found');
    t.notMatch(await parley.srv.server.stats(), /state=ready/, 'no stream came up');
    t.match(prosody.logText(), /Forbidding insecure connection to\/from parley\.test because its certificate is not trusted/, "Prosody's log: why");
    // The other way Prosody will not accept Parley's certificate either: its own user gets the error.
    const refused = bobGets(bob, (st) => st.is('message') && st.attrs.id === 'x2');
    await bob.send(xml('message', { to: `${fromAlice}/r1`, type: 'chat', id: 'x2' }, xml('body', {}, 'and you?')));
    t.equal((await refused).attrs.type, 'error', 'Prosody bounces its user\'s message');
  });
}

const missing = prosodyMissing();
if (missing) {
  t.test('federation with Prosody', { skip: missing }, () => {});
} else {
  await run();
}
