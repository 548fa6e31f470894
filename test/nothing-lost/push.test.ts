// XEP-0357 push between real sessions. The app server is a logged-in test client (its full JID is
// the JID given in <enable/>): it receives the account's pubsub publishes and answers them.
//
// "No notification" is checked without sleeping: after the stanza under test, the sender writes a
// chat message to the app server's client over the same path; the server handles a session's
// stanzas in order, so a notification would have been written to the app server first.
import { parse, type Element } from 'ltx';
import t, { type Test } from 'tap';
import { builtinPlugins } from '../../plugins/index.js';
import type { PushApi } from '../../plugins/push/index.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const NS_PUSH = 'urn:xmpp:push:0';
const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
const NS_DATA = 'jabber:x:data';
const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

const srv = await startTestServer({
  modules: '  disco: {}\n  push:\n    max_errors: 3\n    timeout: 1s\n    max_registrations: 3',
});
t.teardown(() => srv.close());
// With the offline plugin (when it exists here), notifications follow what the spool stored.
const spooling = builtinPlugins.has('offline')
  ? await startTestServer({ modules: '  disco: {}\n  offline: {}\n  push: {}' })
  : undefined;
if (spooling) t.teardown(() => spooling.close());

let users = 0;
async function user(server: TestServer = srv): Promise<string> {
  const name = `u${++users}`;
  await server.register(name, 'pw');
  return name;
}
const bare = (name: string) => `${name}@localhost`;

let ids = 0;
async function iq(c: RawClient, text: string, type?: string): Promise<Element> {
  const id = `iq${++ids}`;
  c.send(text.replace("id='ID'", `id='${id}'`));
  const answer = await c.nextNamed('iq', id);
  if (type && answer.attrs.type !== type) throw new Error(`expected ${type}: ${answer.toString()}`);
  return answer;
}

function errorCondition(el: Element): string | undefined {
  return el.getChild('error')?.getChildElements().find((e) => e.attrs.xmlns === NS_STANZAS && e.name !== 'text')?.name;
}

function enable(app: string, node?: string, secret?: string): string {
  const form = secret === undefined ? '' : `<x xmlns='${NS_DATA}' type='submit'>`
    + `<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>`
    + `<field var='secret'><value>${secret}</value></field></x>`;
  return `<iq type='set' id='ID'><enable xmlns='${NS_PUSH}' jid='${app}'${node === undefined ? '' : ` node='${node}'`}>${form}</enable></iq>`;
}

/** Logs in, optionally enables push, then leaves and waits until the server has no session of the user. */
async function registerAndLeave(server: TestServer, name: string, enables: string[]): Promise<void> {
  const c = await RawClient.login(server.c2sPort, name, 'pw', { resource: 'phone' });
  for (const e of enables) await iq(c, e, 'result');
  c.end();
  await until(() => server.server.sessions.resources(bare(name)).length === 0);
}

/** Waits (bounded) for a condition of the server. */
async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const isPublish = (el: Element) => el.name === 'iq' && el.attrs.type === 'set' && el.getChild('pubsub', NS_PUBSUB) !== undefined;

interface Publish { iq: Element; node: string | undefined; fields: Map<string, string>; options: Map<string, string> | undefined }

function fieldsOf(x: Element | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of x?.getChildren('field') ?? []) out.set(f.attrs.var, f.getChildText('value') ?? '');
  return out;
}

async function nextPublish(app: RawClient, timeoutMs?: number): Promise<Publish> {
  const el = await app.next(isPublish, timeoutMs);
  const pubsub = el.getChild('pubsub', NS_PUBSUB)!;
  const publish = pubsub.getChild('publish')!;
  const notification = publish.getChild('item')!.getChild('notification', NS_PUSH)!;
  const options = pubsub.getChild('publish-options')?.getChild('x', NS_DATA);
  return { iq: el, node: publish.attrs.node, fields: fieldsOf(notification.getChild('x', NS_DATA)), options: options ? fieldsOf(options) : undefined };
}

function answer(app: RawClient, p: Publish, error?: string): void {
  const { id, from } = p.iq.attrs;
  app.send(error === undefined ? `<iq type='result' id='${id}' to='${from}'/>` : `<iq type='error' id='${id}' to='${from}'>${error}</iq>`);
}

/** Sends a chat message from `from` to the app server's client and checks it is the next thing the app server gets. */
async function nothingBefore(from: RawClient, app: RawClient, appJid: string): Promise<void> {
  const marker = `marker${++ids}`;
  from.send(`<message to='${appJid}' type='chat'><body>${marker}</body></message>`);
  const next = await app.next((el) => isPublish(el) || (el.name === 'message' && el.getChildText('body') === marker));
  if (next.name !== 'message') throw new Error(`unexpected notification: ${next.toString()}`);
}

let msgs = 0;
const chat = (to: string, body = `body${++msgs}`) => `<message to='${to}' type='chat' id='m${++msgs}'><body>${body}</body></message>`;

/** A sender, an app server client, and a user who enabled push for the app server and went offline. */
async function scene(enables: (app: string) => string[], server: TestServer = srv) {
  const [a, b, app] = [await user(server), await user(server), await user(server)];
  const ca = await RawClient.login(server.c2sPort, a, 'pw', { resource: 'r' });
  const capp = await RawClient.login(server.c2sPort, app, 'pw', { resource: 'srv' });
  const appJid = `${bare(app)}/srv`;
  await registerAndLeave(server, b, enables(appJid));
  return { a, b, ca, capp, appJid };
}

t.test('the account advertises push', async (t) => {
  const a = await user();
  const c = await RawClient.login(srv.c2sPort, a, 'pw', { resource: 'r' });
  const info = await iq(c, `<iq type='get' id='ID' to='${bare(a)}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, 'result');
  t.ok(info.getChild('query')!.getChildren('feature').some((f) => f.attrs.var === NS_PUSH));
  c.end();
});

for (const [variant, server] of [['without offline storage', srv], ['with offline storage', spooling]] as const) {
  t.test(`one notification per offline message, without the body, with the publish options (${variant})`,
    { skip: !server && 'no offline plugin' }, (t) => offlineMessages(t, server!));
}

async function offlineMessages(t: Test, server: TestServer): Promise<void> {
  const { b, ca, capp, appJid } = await scene((app) => [enable(app, 'node1', 's3cr3t')], server);
  for (let i = 1; i <= 3; i++) ca.send(chat(bare(b), `secret text ${i}`));
  for (let i = 1; i <= 3; i++) {
    const p = await nextPublish(capp);
    t.equal(p.iq.attrs.from, bare(b), 'published by the user\'s bare JID');
    t.equal(p.iq.attrs.to, appJid);
    t.equal(p.node, 'node1');
    t.equal(p.fields.get('FORM_TYPE'), 'urn:xmpp:push:summary');
    t.equal(p.fields.get('message-count'), String(i), 'messages since the user was last online');
    t.notOk(p.fields.has('last-message-sender'), 'no sender by default');
    t.not(p.fields.get('last-message-body'), `secret text ${i}`, 'never the body by default');
    t.ok(p.fields.has('last-message-body'), 'a placeholder marks a message with content');
    t.equal(p.options?.get('FORM_TYPE'), 'http://jabber.org/protocol/pubsub#publish-options');
    t.equal(p.options?.get('secret'), 's3cr3t', 'the secret given at enable time');
    answer(capp, p);
  }
  // Chat states and receipts wake no device.
  ca.send(`<message to='${bare(b)}' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`);
  ca.send(`<message to='${bare(b)}' type='chat'><received xmlns='urn:xmpp:receipts' id='x'/></message>`);
  ca.send(`<message to='${bare(b)}' type='chat'><body>hush</body><no-store xmlns='urn:xmpp:hints'/></message>`);
  await nothingBefore(ca, capp, appJid);

  // Coming online resets the count.
  await registerAndLeave(server, b, []);
  ca.send(chat(bare(b)));
  const p = await nextPublish(capp);
  t.equal(p.fields.get('message-count'), '1');
  answer(capp, p);
  ca.end();
  capp.end();
}

t.test('enable and disable', async (t) => {
  const [a, b, app] = [await user(), await user(), await user()];
  const ca = await RawClient.login(srv.c2sPort, a, 'pw', { resource: 'r' });
  const capp = await RawClient.login(srv.c2sPort, app, 'pw', { resource: 'srv' });
  const appJid = `${bare(app)}/srv`;
  const cb = await RawClient.login(srv.c2sPort, b, 'pw', { resource: 'phone' });

  const refused: Array<[string, string]> = [
    [`<iq type='set' id='ID'><enable xmlns='${NS_PUSH}' node='n'/></iq>`, 'bad-request'],
    [`<iq type='set' id='ID'><enable xmlns='${NS_PUSH}' jid='a@@b' node='n'/></iq>`, 'jid-malformed'],
    [enable(bare(b), 'n'), 'not-acceptable'],
    [enable(`${bare(b)}/other`, 'n'), 'not-acceptable'],
    [`<iq type='set' id='ID'><enable xmlns='${NS_PUSH}' jid='${appJid}' node='n'><x xmlns='${NS_DATA}' type='submit'>`
      + `<field var='FORM_TYPE'><value>urn:example</value></field></x></enable></iq>`, 'bad-request'],
    [`<iq type='set' id='ID'><disable xmlns='${NS_PUSH}'/></iq>`, 'bad-request'],
  ];
  for (const [stanza, condition] of refused) t.equal(errorCondition(await iq(cb, stanza, 'error')), condition, stanza);
  t.equal(errorCondition(await iq(ca, enable(appJid, 'n').replace("type='set'", `type='set' to='${bare(b)}'`), 'error')), 'forbidden',
    'only the account\'s own clients');

  await iq(cb, enable(appJid, 'n1'), 'result');
  await iq(cb, enable(appJid, 'n2'), 'result');
  await iq(cb, enable(appJid, 'n2', 'new'), 'result');
  cb.end();
  await until(() => srv.server.sessions.resources(bare(b)).length === 0);
  ca.send(chat(bare(b)));
  const got = [await nextPublish(capp), await nextPublish(capp)];
  t.same(got.map((p) => p.node).sort(), ['n1', 'n2'], 'one notification per registration; enabling again replaces');
  t.equal(got.find((p) => p.node === 'n2')!.options?.get('secret'), 'new', 'with the latest publish options');
  for (const p of got) answer(capp, p);
  await nothingBefore(ca, capp, appJid);

  // Disabling one node, then the whole app server.
  await registerAndLeave(srv, b, [`<iq type='set' id='ID'><disable xmlns='${NS_PUSH}' jid='${appJid}' node='n1'/></iq>`]);
  ca.send(chat(bare(b)));
  const left = await nextPublish(capp);
  t.equal(left.node, 'n2', 'the other node stays enabled');
  answer(capp, left);
  await nothingBefore(ca, capp, appJid);
  await registerAndLeave(srv, b, [enable(appJid, 'n3'), `<iq type='set' id='ID'><disable xmlns='${NS_PUSH}' jid='${appJid}'/></iq>`]);
  ca.send(chat(bare(b)));
  await nothingBefore(ca, capp, appJid);
  t.pass('no notification once disabled');

  // A new registration beyond max_registrations (3) replaces the oldest.
  await registerAndLeave(srv, b, ['o1', 'o2', 'o3', 'o4'].map((n) => enable(appJid, n)));
  ca.send(chat(bare(b)));
  const nodes: string[] = [];
  for (let i = 0; i < 3; i++) {
    const p = await nextPublish(capp);
    nodes.push(p.node!);
    answer(capp, p);
  }
  t.same(nodes.sort(), ['o2', 'o3', 'o4']);
  await nothingBefore(ca, capp, appJid);
  ca.end();
  capp.end();
});

t.test('errors from the app server disable the registration after max_errors in a row', async (t) => {
  const { b, ca, capp, appJid } = await scene((app) => [enable(app, 'flaky')]);
  const cancel = `<error type='cancel'><item-not-found xmlns='${NS_STANZAS}'/></error>`;
  const wait = `<error type='wait'><resource-constraint xmlns='${NS_STANZAS}'/></error>`;
  // error, error, success, error, error, then wait-type errors: still enabled (max_errors is 3).
  for (const reply of [cancel, cancel, undefined, cancel, cancel, wait, wait, wait]) {
    ca.send(chat(bare(b)));
    answer(capp, await nextPublish(capp), reply);
  }
  const registrations = srv.server.storage.map('push');
  ca.send(chat(bare(b)));
  answer(capp, await nextPublish(capp), cancel);
  // The answer is handled after it arrives; wait for the registration to go.
  await until(async () => (await registrations.keys(bare(b))).length === 0);
  ca.send(chat(bare(b)));
  await nothingBefore(ca, capp, appJid);
  t.pass('no notification after the third error in a row');
  ca.end();
  capp.end();
});

t.test('an app server that does not answer is disabled too', async (t) => {
  const { b, ca, capp, appJid } = await scene((app) => [enable(app, 'silent')]);
  for (let i = 0; i < 3; i++) {
    ca.send(chat(bare(b)));
    await nextPublish(capp);
  }
  const registrations = srv.server.storage.map('push');
  await until(async () => (await registrations.keys(bare(b))).length === 0);
  ca.send(chat(bare(b)));
  await nothingBefore(ca, capp, appJid);
  t.pass('disabled after three timeouts');
  ca.end();
  capp.end();
});

t.test('the app server may disable a registration itself', async (t) => {
  const { b, ca, capp, appJid } = await scene((app) => [enable(app, 'gone')]);
  capp.send(`<message to='${bare(b)}'><pubsub xmlns='${NS_PUBSUB}' node='gone'><affiliation jid='${bare(b)}' affiliation='none'/></pubsub></message>`);
  const registrations = srv.server.storage.map('push');
  await until(async () => (await registrations.keys(bare(b))).length === 0);
  ca.send(chat(bare(b)));
  await nothingBefore(ca, capp, appJid);
  t.pass('no notification after the affiliation change');
  ca.end();
  capp.end();
});

t.test('the push service notifies a hibernated session\'s own registration', async (t) => {
  const [b, app] = [await user(), await user()];
  const capp = await RawClient.login(srv.c2sPort, app, 'pw', { resource: 'srv' });
  const appJid = `${bare(app)}/srv`;
  const phone = await RawClient.login(srv.c2sPort, b, 'pw', { resource: 'phone' });
  const tablet = await RawClient.login(srv.c2sPort, b, 'pw', { resource: 'tablet' });
  await iq(phone, enable(appJid, 'phone-node'), 'result');
  await iq(tablet, enable(appJid, 'tablet-node'), 'result');
  const push = srv.server.host('localhost')!.services.get('push') as PushApi;
  const session = srv.server.sessions.get(bare(b), 'phone')!;
  const stanza = parse(`<message from='x@localhost/r' to='${bare(b)}/phone' type='chat'><body>queued</body></message>`);
  t.equal(await push.notify(bare(b), stanza, session), 1);
  const p = await nextPublish(capp);
  t.equal(p.node, 'phone-node', 'only the session\'s own registration');
  answer(capp, p);
  t.equal(await push.notify(bare(b), stanza, session), 0, 'one notification per stanza');
  t.equal(await push.notify(bare(b), parse(`<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>`)), 0,
    'nothing for a chat state');
  const all = await push.notify(bare(b), parse(`<message from='x@localhost/r' type='chat'><body>spooled</body></message>`));
  t.equal(all, 2, 'without a session: every registration');
  for (let i = 0; i < 2; i++) answer(capp, await nextPublish(capp));

  // Carbons queued for the session: a received one is about the message it carries; a sent one
  // is the user's own message. Room messages wake the device without an alert.
  const carbon = (dir: string) => parse(`<message from='${bare(b)}' to='${bare(b)}/phone' type='chat'><${dir} xmlns='urn:xmpp:carbons:2'>`
    + `<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' from='x@localhost/r' to='${bare(b)}/tablet' type='chat'>`
    + `<body>carried</body></message></forwarded></${dir}></message>`);
  t.equal(await push.notify(bare(b), carbon('sent'), session), 0, 'nothing for a sent carbon');
  t.equal(await push.notify(bare(b), carbon('received'), session), 1);
  const fromCarbon = await nextPublish(capp);
  t.equal(fromCarbon.fields.get('last-message-body'), 'New message', 'a received carbon is about its message');
  answer(capp, fromCarbon);
  t.equal(await push.notify(bare(b), parse(`<message from='room@conference.localhost/n' type='groupchat'><body>hi all</body></message>`), session), 1);
  const fromRoom = await nextPublish(capp);
  t.notOk(fromRoom.fields.has('last-message-body'), 'room traffic: no alert');
  answer(capp, fromRoom);
  phone.end();
  tablet.end();
  capp.end();
});

t.test('include_body and include_sender', async (t) => {
  const open = await startTestServer({ modules: '  disco: {}\n  push:\n    include_body: true\n    include_sender: true' });
  t.teardown(() => open.close());
  const { b, ca, capp } = await scene((app) => [enable(app, 'n')], open);
  ca.send(chat(bare(b), 'see you at 8'));
  const p = await nextPublish(capp);
  t.equal(p.fields.get('last-message-body'), 'see you at 8');
  t.match(p.fields.get('last-message-sender'), /\/r$/, 'the sender\'s JID');
  t.notOk(p.options, 'no publish options when none were given');
  answer(capp, p);
  ca.end();
  capp.end();
});

// With stream management (the smacks plugin): a message queued for a hibernated session wakes that
// session's app, and when the session then ends unresumed, the message handed on to the spool is
// not notified a second time.
t.test('a hibernated session is notified once per message', { skip: !builtinPlugins.has('smacks') && 'no smacks plugin' }, async (t) => {
  const offline = builtinPlugins.has('offline') ? '  offline: {}\n' : '';
  const sm = await startTestServer({ modules: `  disco: {}\n  smacks:\n    resume_timeout: 1s\n    max_resume_timeout: 1s\n${offline}  push: {}` });
  t.teardown(() => sm.close());
  const [a, b, app] = [await user(sm), await user(sm), await user(sm)];
  const ca = await RawClient.login(sm.c2sPort, a, 'pw', { resource: 'r' });
  const capp = await RawClient.login(sm.c2sPort, app, 'pw', { resource: 'srv' });
  const appJid = `${bare(app)}/srv`;
  const cb = await RawClient.login(sm.c2sPort, b, 'pw', { resource: 'phone' });
  await iq(cb, enable(appJid, 'sm-node'), 'result');
  cb.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>");
  await cb.nextNamed('enabled');
  cb.destroy();
  // (ClientSession.hibernating comes with stream management.)
  await until(() => (sm.server.sessions.get(bare(b), 'phone') as { hibernating?: boolean } | undefined)?.hibernating === true);

  ca.send(`<message to='${bare(b)}' type='chat' id='h1'><body>while asleep</body></message>`);
  const p = await nextPublish(capp);
  t.equal(p.node, 'sm-node', 'the hibernated session\'s registration');
  t.equal(p.fields.get('message-count'), '1');
  answer(capp, p);

  // The window ends: the unacknowledged message goes on (to the spool, or back to its sender when
  // there is no offline storage) without a second notification.
  await until(() => sm.server.sessions.resources(bare(b)).length === 0, 10_000);
  if (offline) {
    const again = await RawClient.login(sm.c2sPort, b, 'pw', { resource: 'phone' });
    await again.next((el) => el.attrs.id === 'h1', 10_000);
    again.end();
  } else {
    await ca.next((el) => el.attrs.id === 'h1' && el.attrs.type === 'error', 10_000);
  }
  await nothingBefore(ca, capp, appJid);
  t.pass('no second notification for the handed-on copy');
  ca.end();
  capp.end();
});
