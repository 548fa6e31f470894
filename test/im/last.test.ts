// XEP-0012 last activity of users, between real sessions.
import type { Element } from 'ltx';
import t from 'tap';
import type { RosterApi, Subscription } from '../../plugins/roster/api.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({ modules: '  disco: {}\n  roster: {}\n  presence: {}\n  last: {}' });
t.teardown(() => srv.close());
for (const u of ['alice', 'bob', 'carol', 'dave', 'erin']) await srv.register(u, 'pw');

const NS = 'jabber:iq:last';
const STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
let counter = 0;

/** Sets the subscription `owner` has with `contact` (what the handshake would leave in the roster). */
async function subscription(owner: string, contact: string, sub: Subscription): Promise<void> {
  const roster = srv.server.host('localhost')!.services.get('roster') as RosterApi;
  await roster.upsert(`${owner}@localhost`, { jid: `${contact}@localhost`, groups: [], subscription: sub });
}

const presence = (type: string | undefined, from?: string) => (el: Element): boolean =>
  el.name === 'presence' && el.attrs.type === type && (from === undefined || el.attrs.from === from);

async function login(user: string, resource: string): Promise<RawClient> {
  const c = await RawClient.login(srv.c2sPort, user, 'pw', { resource });
  await c.next(presence(undefined, c.jid));
  return c;
}

async function last(c: RawClient, to: string): Promise<Element> {
  const id = `l${++counter}`;
  c.send(`<iq type='get' id='${id}' to='${to}'><query xmlns='${NS}'/></iq>`);
  return c.nextNamed('iq', id);
}

function condition(el: Element): string | undefined {
  return el.getChild('error')?.children.find((c): c is Element => typeof c !== 'string' && c.attrs.xmlns === STANZAS && c.name !== 'text')?.name;
}

t.test('contacts learn when a user went offline, and with which status', async (t) => {
  await subscription('alice', 'bob', 'both');
  await subscription('bob', 'alice', 'both');
  await subscription('alice', 'dave', 'to'); // alice sees dave's presence, dave does not see hers
  const bob = await login('bob', 'b');
  const disco = await (async () => {
    bob.send("<iq type='get' to='localhost' id='disco'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
    return bob.nextNamed('iq', 'disco');
  })();
  t.ok(disco.getChild('query')!.getChildren('feature').some((f) => f.attrs.var === NS), 'jabber:iq:last on the domain');

  const alice = await login('alice', 'a');
  const online = await last(bob, 'alice@localhost');
  t.equal(online.attrs.type, 'result');
  t.equal(online.getChild('query', NS)?.attrs.seconds, '0', 'online: 0 seconds');
  t.equal(online.getChild('query', NS)?.getText(), '', 'and no text');

  alice.send("<presence type='unavailable'><status>Heading Home</status></presence>");
  await bob.next(presence('unavailable', 'alice@localhost/a'));
  alice.end();
  await alice.closed();
  const offline = await last(bob, 'alice@localhost');
  t.equal(offline.attrs.type, 'result');
  t.equal(offline.attrs.from, 'alice@localhost', 'answered for the account');
  t.match(offline.getChild('query', NS)?.attrs.seconds, /^[01]$/, 'seconds since the logout');
  t.equal(offline.getChild('query', NS)?.getText(), 'Heading Home', 'the status of the last unavailable presence');

  // The seconds count from the stored logout time: move it 903 seconds back (the presence
  // plugin keeps { stanza, at } per user) rather than waiting.
  const store = srv.server.storage.keyval('presence_last');
  const stored = (await store.get('alice@localhost')) as { stanza: string; at: number };
  await store.set('alice@localhost', { ...stored, at: stored.at - 903_000 });
  t.match((await last(bob, 'alice@localhost')).getChild('query', NS)?.attrs.seconds, /^90[34]$/, 'from the time of the logout');

  const self = await login('alice', 'again');
  t.equal((await last(self, 'alice@localhost')).getChild('query', NS)?.attrs.seconds, '0', 'the user may ask about itself');
  self.end();
  bob.end();
});

t.test('who may not ask', async (t) => {
  const carol = await login('carol', 'c');
  t.equal(condition(await last(carol, 'alice@localhost')), 'forbidden', 'no subscription');
  const dave = await login('dave', 'd');
  t.equal(condition(await last(dave, 'alice@localhost')), 'forbidden', "the user is subscribed to the asker, not the other way round");
  await subscription('erin', 'carol', 'from');
  t.equal(condition(await last(carol, 'erin@localhost')), 'item-not-found', 'a contact that was never online');
  carol.end();
  dave.end();
});
