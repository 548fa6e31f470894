// XEP-0191 blocking (with XEP-0377 reports) between real sessions.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Element } from 'ltx';
import t from 'tap';
import type { RosterApi } from '../../plugins/roster/api.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({
  hosts: ['localhost', 'example.test'],
  modules: '  disco: {}\n  ping: {}\n  roster: {}\n  presence: {}\n  blocking:\n    max_items: 5',
});
t.teardown(() => srv.close());
for (const u of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'gina', 'hank', 'ivan', 'mallory']) await srv.register(u, 'pw');
await srv.register('xena', 'pw', 'example.test');

const NS = 'urn:xmpp:blocking';
const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
let counter = 0;

/** Makes two users subscribed to each other's presence ('both'), as the server would after the handshake. */
async function befriend(a: string, b: string): Promise<void> {
  const roster = srv.server.host('localhost')!.services.get('roster') as RosterApi;
  await roster.upsert(`${a}@localhost`, { jid: `${b}@localhost`, groups: [], subscription: 'both' });
  await roster.upsert(`${b}@localhost`, { jid: `${a}@localhost`, groups: [], subscription: 'both' });
}

async function nothing(c: RawClient, pred: (el: Element) => boolean, ms = 300): Promise<boolean> {
  try {
    await c.next(pred, ms);
    return false;
  } catch {
    return true;
  }
}

/** Consumes what has arrived, so later waits see only new stanzas. */
async function drain(c: RawClient): Promise<void> {
  for (;;) {
    try {
      await c.next(() => true, 150);
    } catch {
      return;
    }
  }
}

const presence = (type: string | undefined, from?: string) => (el: Element): boolean =>
  el.name === 'presence' && el.attrs.type === type && (from === undefined || el.attrs.from === from);
const body = (el: Element): boolean => el.name === 'message' && el.getChildText('body') !== null;
const push = (name: string) => (el: Element): boolean => el.name === 'iq' && el.attrs.type === 'set' && el.getChild(name, NS) !== undefined;

/** Logs in with initial presence and waits for its echo. */
async function login(user: string, resource: string, host = 'localhost'): Promise<RawClient> {
  const c = await RawClient.login(srv.c2sPort, user, 'pw', { resource, host });
  await c.next(presence(undefined, c.jid));
  return c;
}

async function iq(c: RawClient, payload: string, type = 'set', to?: string): Promise<Element> {
  const id = `q${++counter}`;
  c.send(`<iq type='${type}' id='${id}'${to ? ` to='${to}'` : ''}>${payload}</iq>`);
  return c.nextNamed('iq', id);
}

async function blocklist(c: RawClient): Promise<string[]> {
  const r = await iq(c, `<blocklist xmlns='${NS}'/>`, 'get');
  return r.getChild('blocklist', NS)!.getChildren('item').map((i) => i.attrs.jid!).sort();
}

function condition(el: Element): string | undefined {
  return el.getChild('error')?.children.find((c): c is Element => typeof c !== 'string' && c.attrs.xmlns === STANZAS && c.name !== 'text')?.name;
}

t.test('disco advertises blocking and reporting', async (t) => {
  const c = await login('alice', 'disco');
  const r = await iq(c, "<query xmlns='http://jabber.org/protocol/disco#info'/>", 'get', 'localhost');
  const features = r.getChild('query')!.getChildren('feature').map((f) => f.attrs.var);
  for (const f of [NS, 'urn:xmpp:reporting:1', 'urn:xmpp:reporting:reason:spam:0', 'urn:xmpp:reporting:reason:abuse:0']) {
    t.ok(features.includes(f), f);
  }
  c.end();
});

t.test('block, unblock and unblock-all, with pushes to the resources that asked for the list', async (t) => {
  const a1 = await login('alice', 'one');
  const a2 = await login('alice', 'two');
  const a3 = await login('alice', 'three');
  t.same(await blocklist(a1), [], 'empty at first');
  t.same(await blocklist(a2), []);

  const res = await iq(a1, `<block xmlns='${NS}'><item jid='Spammer@Example.COM'/><item jid='evil.example'/></block>`);
  t.equal(res.attrs.type, 'result');
  for (const c of [a1, a2]) {
    const p = await c.next(push('block'));
    t.equal(p.attrs.to, c.jid, 'push addressed to the resource');
    t.same(p.getChild('block', NS)!.getChildren('item').map((i) => i.attrs.jid).sort(), ['evil.example', 'spammer@example.com'],
      'pushed items are the prepared JIDs');
  }
  t.ok(await nothing(a3, push('block')), 'a resource that never asked for the list gets no push');
  t.same(await blocklist(a3), ['evil.example', 'spammer@example.com'], 'the list as stored');

  t.equal((await iq(a2, `<unblock xmlns='${NS}'><item jid='evil.example'/></unblock>`)).attrs.type, 'result');
  for (const c of [a1, a2, a3]) {
    const p = await c.next(push('unblock'));
    t.same(p.getChild('unblock', NS)!.getChildren('item').map((i) => i.attrs.jid), ['evil.example']);
  }
  t.same(await blocklist(a1), ['spammer@example.com']);

  await iq(a1, `<block xmlns='${NS}'><item jid='x@example.com'/></block>`);
  for (const c of [a1, a2, a3]) await c.next(push('block'));
  t.equal((await iq(a1, `<unblock xmlns='${NS}'/>`)).attrs.type, 'result', 'unblock all');
  for (const c of [a1, a2, a3]) {
    const p = await c.next(push('unblock'));
    t.equal(p.getChild('unblock', NS)!.children.length, 0, 'the unblock-all push is empty');
  }
  t.same(await blocklist(a2), []);
  for (const c of [a1, a2, a3]) c.end();
});

t.test('bad commands change nothing', async (t) => {
  const c = await login('dave', 'd');
  await blocklist(c);
  await iq(c, `<block xmlns='${NS}'><item jid='keep@example.com'/></block>`);
  await c.next(push('block'));

  t.equal(condition(await iq(c, `<block xmlns='${NS}'/>`)), 'bad-request', 'a block without items');
  t.equal(condition(await iq(c, `<block xmlns='${NS}'><item jid='ok@example.com'/><item jid='a@b@c'/></block>`)), 'jid-malformed',
    'an invalid JID');
  t.equal(condition(await iq(c, `<block xmlns='${NS}'><item jid='ok@example.com'/><item/></block>`)), 'bad-request', 'an item without jid');
  t.equal(condition(await iq(c, `<unblock xmlns='${NS}'><item jid='keep@example.com'/><item jid='@x'/></unblock>`)), 'jid-malformed',
    'an invalid JID in an unblock');
  const tooMany = [1, 2, 3, 4, 5].map((i) => `<item jid='u${i}@example.com'/>`).join('');
  const limited = await iq(c, `<block xmlns='${NS}'>${tooMany}</block>`);
  t.equal(condition(limited), 'policy-violation', 'more than max_items');
  t.ok(await nothing(c, push('block')), 'no push for refused commands');
  t.same(await blocklist(c), ['keep@example.com'], 'the list is as before');

  t.equal(condition(await iq(c, `<blocklist xmlns='${NS}'/>`, 'get', 'erin@localhost')), 'forbidden', "another user's list");
  t.equal(condition(await iq(c, `<block xmlns='${NS}'><item jid='z@example.com'/></block>`, 'set', 'erin@localhost')), 'forbidden',
    "changing another user's list");
  c.end();
});

t.test('messages and IQs in both directions', async (t) => {
  const alice = await login('alice', 'm');
  const bob = await login('bob', 'm');
  await iq(alice, `<block xmlns='${NS}'><item jid='bob@localhost'/></block>`);

  bob.send("<message to='alice@localhost' type='chat' id='in1'><body>hello?</body></message>");
  const bounced = await bob.nextNamed('message', 'in1');
  t.equal(bounced.attrs.type, 'error');
  t.equal(bounced.attrs.from, 'alice@localhost', 'the error comes from the user, who appears offline');
  t.equal(condition(bounced), 'service-unavailable');
  bob.send("<message to='alice@localhost/m' type='chat' id='in2'><body>hello full?</body></message>");
  t.equal(condition(await bob.nextNamed('message', 'in2')), 'service-unavailable', 'also to a full JID');
  bob.send("<message to='alice@localhost' type='headline' id='in3'><body>news</body></message>");
  t.ok(await nothing(bob, (el) => el.attrs.id === 'in3'), 'a headline is dropped without an error');
  t.ok(await nothing(alice, body), 'the user gets none of them');

  const ping = await iq(bob, "<ping xmlns='urn:xmpp:ping'/>", 'get', 'alice@localhost');
  t.equal(condition(ping), 'service-unavailable', 'an IQ to the bare JID');

  alice.send("<message to='bob@localhost' type='chat' id='out1'><body>you are blocked</body></message>");
  const refused = await alice.nextNamed('message', 'out1');
  t.equal(refused.attrs.type, 'error');
  t.equal(condition(refused), 'not-acceptable');
  t.ok(refused.getChild('error')!.getChild('blocked', 'urn:xmpp:blocking:errors'), 'with the blocked condition');
  t.equal(refused.getChildText('body'), 'you are blocked', 'the message comes back');
  const outIq = await iq(alice, "<ping xmlns='urn:xmpp:ping'/>", 'get', 'bob@localhost/m');
  t.equal(condition(outIq), 'not-acceptable', 'an IQ to the blocked JID');
  t.ok(await nothing(bob, (el) => el.name === 'message' || (el.name === 'iq' && el.attrs.type === 'get')), 'the blocked JID gets nothing');

  await iq(alice, `<unblock xmlns='${NS}'><item jid='bob@localhost'/></unblock>`);
  bob.send("<message to='alice@localhost/m' type='chat' id='in4'><body>again</body></message>");
  t.equal((await alice.next(body)).getChildText('body'), 'again', 'unblocking restores delivery');
  alice.send("<message to='bob@localhost/m' type='chat'><body>back</body></message>");
  t.equal((await bob.next(body)).getChildText('body'), 'back', 'both ways');
  alice.end();
  bob.end();
});

t.test('presence neither way; unblock restores it', async (t) => {
  await befriend('carol', 'frank');
  const carol = await login('carol', 'c');
  const frank = await login('frank', 'f');
  await drain(carol);
  await drain(frank);

  await iq(carol, `<block xmlns='${NS}'><item jid='frank@localhost'/></block>`);
  const gone = await frank.next(presence('unavailable', 'carol@localhost/c'));
  t.ok(gone, 'the blocked contact sees the user go offline');
  t.ok(await carol.next(presence('unavailable', 'frank@localhost/f')), "the user's resources see the contact go offline");

  carol.send("<presence><status>busy</status></presence>");
  await carol.next(presence(undefined, 'carol@localhost/c'));
  t.ok(await nothing(frank, presence(undefined, 'carol@localhost/c')), "the user's broadcasts do not reach the blocked contact");
  frank.send("<presence><status>here</status></presence>");
  await frank.next(presence(undefined, 'frank@localhost/f'));
  t.ok(await nothing(carol, presence(undefined, 'frank@localhost/f')), "the contact's broadcasts do not reach the user");
  frank.send("<presence to='carol@localhost' type='probe'/>");
  t.ok(await nothing(frank, (el) => el.name === 'presence' && el.attrs.from?.startsWith('carol@') === true),
    'a probe is not answered, not even with an error');
  carol.send("<presence to='frank@localhost/f'/>");
  const directed = await carol.next((el) => el.name === 'presence' && el.attrs.type === 'error');
  t.equal(condition(directed), 'not-acceptable', 'directed presence from the user is refused');
  t.ok(await nothing(frank, presence(undefined, 'carol@localhost/c')));

  await iq(carol, `<unblock xmlns='${NS}'><item jid='frank@localhost'/></unblock>`);
  const back = await frank.next(presence(undefined, 'carol@localhost/c'));
  t.equal(back.getChildText('status'), 'busy', "the contact gets the user's current presence again");
  const probed = await carol.next(presence(undefined, 'frank@localhost/f'));
  t.equal(probed.getChildText('status'), 'here', "the user gets the contact's presence again");
  carol.send("<presence><status>free</status></presence>");
  t.equal((await frank.next(presence(undefined, 'carol@localhost/c'))).getChildText('status'), 'free', 'broadcasts flow again');
  carol.end();
  frank.end();
});

t.test('a user that goes offline while blocked stays invisible to the blocked contact', async (t) => {
  await befriend('gina', 'hank');
  const gina = await login('gina', 'g');
  const hank = await login('hank', 'h');
  await iq(gina, `<block xmlns='${NS}'><item jid='hank@localhost'/></block>`);
  await hank.next(presence('unavailable', 'gina@localhost/g'));
  gina.end();
  t.ok(await nothing(hank, presence('unavailable', 'gina@localhost/g')), 'no unavailable at logout');
  const again = await login('gina', 'g2');
  t.same(await blocklist(again), ['hank@localhost'], 'the list survives the session');
  t.ok(await nothing(hank, presence(undefined, 'gina@localhost/g2')), 'no presence at login either');
  t.ok(await nothing(again, presence(undefined, 'hank@localhost/h')), 'and no answer to the login probes');
  again.end();
  hank.end();
});

t.test('domain and full-JID entries', async (t) => {
  await befriend('erin', 'bob');
  const erin = await login('erin', 'e');
  const xena = await login('xena', 'x', 'example.test');
  const b1 = await login('bob', 'one');
  const b2 = await login('bob', 'two');
  for (const c of [erin, b1, b2]) await drain(c);
  await iq(erin, `<block xmlns='${NS}'><item jid='example.test'/><item jid='bob@localhost/one'/></block>`);
  t.ok(await b1.next(presence('unavailable', 'erin@localhost/e')), 'the blocked resource sees the user go offline');
  t.ok(await nothing(b2, presence('unavailable', 'erin@localhost/e')), 'the other resource does not');
  erin.send('<presence><status>hi</status></presence>');
  t.equal((await b2.next(presence(undefined, 'erin@localhost/e'))).getChildText('status'), 'hi',
    'a broadcast to the bare JID reaches the resource that is not blocked');
  t.ok(await nothing(b1, presence(undefined, 'erin@localhost/e')), 'and not the blocked one');

  xena.send("<message to='erin@localhost' type='chat' id='d1'><body>from the blocked domain</body></message>");
  t.equal(condition(await xena.nextNamed('message', 'd1')), 'service-unavailable', 'a domain entry blocks its users');
  b1.send("<message to='erin@localhost' type='chat' id='d2'><body>blocked resource</body></message>");
  t.equal(condition(await b1.nextNamed('message', 'd2')), 'service-unavailable', 'a full-JID entry blocks that resource');
  b2.send("<message to='erin@localhost' type='chat' id='d3'><body>other resource</body></message>");
  t.equal((await erin.next(body)).getChildText('body'), 'other resource', "the account's other resources get through");
  erin.send("<message to='bob@localhost/two' type='chat' id='d4'><body>to the other resource</body></message>");
  t.equal((await b2.next(body)).getChildText('body'), 'to the other resource');
  erin.send("<iq type='get' to='example.test' id='d5'><ping xmlns='urn:xmpp:ping'/></iq>");
  t.equal(condition(await erin.nextNamed('iq', 'd5')), 'not-acceptable', 'the domain itself is blocked');
  await iq(erin, `<unblock xmlns='${NS}'/>`);
  for (const c of [erin, xena, b1, b2]) c.end();
});

t.test('spam reports are stored with the block', async (t) => {
  const c = await login('alice', 'r');
  const reports = srv.server.storage.archive('blocking_reports');
  const before = (await reports.query('localhost')).items.length;
  const res = await iq(c, `<block xmlns='${NS}'>
    <item jid='spam1@example.com'>
      <report xmlns='urn:xmpp:reporting:1' reason='urn:xmpp:reporting:spam'>
        <stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='s-1'/>
        <text xml:lang='en'>buy now</text>
        <third-party/>
      </report>
    </item>
    <item jid='spam2@example.com'><report xmlns='urn:xmpp:reporting:0'><abuse/></report></item>
    <item jid='plain@example.com'/>
  </block>`);
  t.equal(res.attrs.type, 'result');
  const items = (await reports.query('localhost')).items.slice(before);
  t.equal(items.length, 2, 'one report per reported JID');
  const first = items.find((i) => i.with === 'spam1@example.com')!.value as Record<string, unknown>;
  t.match(first, {
    reporter: 'alice@localhost', jid: 'spam1@example.com', reason: 'urn:xmpp:reporting:spam', text: 'buy now', lang: 'en',
    stanza_ids: [{ id: 's-1', by: 'alice@localhost' }], processing: ['third-party'],
  });
  t.match(items.find((i) => i.with === 'spam2@example.com')!.value, { reason: 'urn:xmpp:reporting:abuse' }, 'the earlier wire form');
  t.same(await blocklist(c), ['plain@example.com', 'spam1@example.com', 'spam2@example.com'], 'all are blocked');

  const bad = await iq(c, `<block xmlns='${NS}'><item jid='spam3@example.com'><report xmlns='urn:xmpp:reporting:1'/></item></block>`);
  t.equal(condition(bad), 'bad-request', 'a report without a reason');
  t.notOk((await blocklist(c)).includes('spam3@example.com'), 'and nothing is blocked');
  t.equal((await reports.query('localhost')).items.length, before + 2, 'nor reported');
  await iq(c, `<unblock xmlns='${NS}'/>`);
  c.end();
});

// A real client library: slixmpp's XEP-0191 and XEP-0377 plugins (the latter puts its report in
// <block/>, not in the item) against the server.
const SLIX_BLOCKING = `
import asyncio, ssl, sys, slixmpp
port, jid, password, spammer = sys.argv[1:5]
class Client(slixmpp.ClientXMPP):
    def __init__(self):
        # PLAIN over STARTTLS: the SASL mechanisms have their own interop test.
        super().__init__(jid, password, sasl_mech='PLAIN')
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ('xep_0030', 'xep_0191', 'xep_0377'):
            self.register_plugin(p)
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('blocked', lambda iq: print('PUSH', ' '.join(sorted(str(j) for j in iq['block']['items'])), flush=True))
        self.add_event_handler('message', self.message)
    async def start(self, _event):
        self.send_presence()
        listed = await self['xep_0191'].get_blocked()
        print('BEFORE', len(listed['blocklist']['items']), flush=True)
        iq = self.make_iq_set()
        iq['block']['items'] = [spammer]
        iq['block']['report']['spam'] = True
        iq['block']['report']['text'] = 'unsolicited offers'
        await iq.send()
        listed = await self['xep_0191'].get_blocked()
        print('LIST', ' '.join(sorted(str(j) for j in listed['blocklist']['items'])), flush=True)
        print('READY', flush=True)
    async def message(self, msg):
        if msg['body'] == 'unblock':
            await self['xep_0191'].unblock(spammer)
            listed = await self['xep_0191'].get_blocked()
            print('AFTER', len(listed['blocklist']['items']), flush=True)
            self.disconnect()
client = Client()
client.connect(('127.0.0.1', int(port)), force_starttls=True)
try:
    asyncio.get_event_loop().run_until_complete(asyncio.wait_for(client.disconnected, 20))
except asyncio.TimeoutError:
    print('TIMEOUT', flush=True)
    sys.exit(1)
`;

t.test('slixmpp blocks, reports and unblocks', async (t) => {
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const mallory = await login('mallory', 'm');
  const child = spawn(python, ['-c', SLIX_BLOCKING, String(srv.c2sPort), 'ivan@localhost/slix', 'pw', 'mallory@localhost']);
  let out = '';
  let onOutput = (): void => undefined;
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    onOutput();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const killer = setTimeout(() => child.kill(), 25_000);
  t.teardown(() => clearTimeout(killer));
  await new Promise<void>((resolve, reject) => {
    onOutput = () => {
      if (out.includes('READY')) resolve();
    };
    void exited.then(() => reject(new Error(`slixmpp ended early: ${out}`)));
  });
  mallory.send("<message to='ivan@localhost/slix' type='chat' id='sx1'><body>cheap pills</body></message>");
  t.equal(condition(await mallory.nextNamed('message', 'sx1')), 'service-unavailable', 'the blocked JID is refused');
  const reports = await srv.server.storage.archive('blocking_reports').query('localhost', { with: 'mallory@localhost' });
  t.match(reports.items.map((i) => i.value), [{ reporter: 'ivan@localhost', reason: 'urn:xmpp:reporting:spam', text: 'unsolicited offers' }],
    'the report is stored');
  const ctl = await login('alice', 'ctl');
  ctl.send("<message to='ivan@localhost/slix' type='chat'><body>unblock</body></message>");
  t.equal(await exited, 0, out);
  t.match(out, 'BEFORE 0');
  t.match(out, 'PUSH mallory@localhost', 'slixmpp got the push');
  t.match(out, 'LIST mallory@localhost');
  t.match(out, 'AFTER 0');
  mallory.end();
  ctl.end();
});
