// XEP-0077 in-band registration with phone numbers over raw streams: the stream feature, the
// form, the two-step submit (SMS, then PIN) across two streams as Dino does it, wrong PINs,
// registration switched off, unencrypted streams, and the logged-in password change and account
// removal.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Element } from 'ltx';
import t from 'tap';
import type { RosterApi } from '../../plugins/roster/api.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const NS = 'jabber:iq:register';
const NS_FEATURE = 'http://jabber.org/features/iq-register';
const dir = mkdtempSync(path.join(tmpdir(), 'parley-register-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const smsLog = path.join(dir, 'sms.log');

// Two hosts: registration is switched off on closed.test. STARTTLS is optional, to show that
// registration is still refused without it.
const srv = await startTestServer({
  hosts: ['localhost', 'closed.test'],
  starttlsRequired: false,
  modules: [
    '  disco: {}',
    '  roster: {}',
    '  presence: {}',
    '  phone:',
    '    throttle:',
    '      number: [{window: 1m, max: 10}]',
    '    sms:',
    `      log_file: ${JSON.stringify(smsLog)}`,
    '  register: {}',
  ].join('\n'),
  yaml: ['host_config:', '  closed.test:', '    modules:', '      register:', '        allow_registration: false'].join('\n'),
});
t.teardown(() => srv.close());

function smsTo(number: string): string[] {
  if (!existsSync(smsLog)) return [];
  return readFileSync(smsLog, 'utf8').split('\n').filter((l) => l.split(' ')[1] === number);
}

function lastPin(number: string): string {
  const line = smsTo(number).pop();
  const pin = line && /\b(\d{6})\b/.exec(line.slice(line.indexOf('"')))?.[1];
  if (!pin) throw new Error(`no SMS to ${number}`);
  return pin;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;');

let ids = 0;
async function submitForm(c: RawClient, fields: Record<string, string>, formType = NS): Promise<Element> {
  const id = `reg${++ids}`;
  const xml = Object.entries(fields).map(([k, v]) => `<field var='${k}'><value>${esc(v)}</value></field>`).join('');
  c.send(`<iq type='set' id='${id}'><query xmlns='${NS}'><x xmlns='jabber:x:data' type='submit'>`
    + `<field var='FORM_TYPE' type='hidden'><value>${formType}</value></field>${xml}</x></query></iq>`);
  return c.nextNamed('iq', id);
}

async function iq(c: RawClient, body: string, attrs = ''): Promise<Element> {
  const id = `q${++ids}`;
  c.send(`<iq id='${id}' ${attrs}>${body}</iq>`);
  return c.nextNamed('iq', id);
}

/** A new stream secured with STARTTLS, not logged in; resolves with it and its features. */
async function secureStream(host = 'localhost'): Promise<{ c: RawClient; features: Element }> {
  const c = await RawClient.connect(srv.c2sPort);
  await c.open(host);
  const features = await c.starttls(host);
  return { c, features };
}

function condition(el: Element): string | undefined {
  const error = el.getChild('error');
  return error?.children.find((x): x is Element => typeof x !== 'string' && x.name !== 'text')?.name;
}

function fieldVars(el: Element): string[] {
  return (el.getChild('query', NS)?.getChild('x', 'jabber:x:data')?.getChildren('field') ?? []).map((f) => String(f.attrs.var));
}

function fieldValue(el: Element, name: string): string | undefined {
  const field = el.getChild('query', NS)?.getChild('x', 'jabber:x:data')?.getChildren('field').find((f) => f.attrs.var === name);
  return field?.getChildText('value') ?? undefined;
}

t.test('two-step registration: form, SMS with not-acceptable and the PIN field, then the PIN on a new stream', async (t) => {
  const number = '+4915112345678';
  const first = await secureStream();
  t.ok(first.features.getChild('register', NS_FEATURE), 'register stream feature before auth');
  const form = await iq(first.c, `<query xmlns='${NS}'/>`, "type='get'");
  t.equal(form.attrs.type, 'result');
  t.same(fieldVars(form), ['FORM_TYPE', 'username', 'password'], 'the form asks for number and password');
  t.equal(fieldValue(form, 'FORM_TYPE'), NS);
  t.ok(form.getChild('query', NS)?.getChild('instructions'), 'with instructions');

  const step1 = await submitForm(first.c, { username: number, password: 'secret pw' });
  t.equal(step1.attrs.type, 'error');
  t.equal(condition(step1), 'not-acceptable');
  t.equal(step1.getChild('error')?.attrs.type, 'modify');
  t.equal(step1.getChild('error')?.attrs.code, '406', 'legacy error code (XEP-0077 §9)');
  t.same(fieldVars(step1), ['FORM_TYPE', 'username', 'password', 'pin'], 'the form again, now with the PIN field');
  t.equal(fieldValue(step1, 'username'), number);
  t.equal(smsTo(number).length, 1, 'one SMS');
  t.notOk(await srv.server.accounts.exists(number, 'localhost'));

  const again = await submitForm(first.c, { username: number, password: 'secret pw' });
  t.equal(condition(again), 'not-acceptable', 'asking again while a PIN is pending');
  t.ok(fieldVars(again).includes('pin'));
  t.equal(smsTo(number).length, 1, 'no second SMS while the first PIN is valid');
  first.c.end();

  // Dino resubmits the completed form on a new stream.
  const second = await secureStream();
  const pin = lastPin(number);
  const wrong = await submitForm(second.c, { username: number, password: 'secret pw', pin: pin === '000000' ? '111111' : '000000' });
  t.equal(condition(wrong), 'not-acceptable', 'a wrong PIN');
  t.match(wrong.getChild('error')?.getChildText('text'), /2 attempt/);
  const done = await submitForm(second.c, { username: number, password: 'secret pw', pin });
  t.equal(done.attrs.type, 'result', 'the right PIN creates the account');
  t.ok(await srv.server.accounts.exists(number, 'localhost'));
  const twice = await submitForm(second.c, { username: '+4915112345679', password: 'x' });
  t.equal(condition(twice), 'not-acceptable', 'one account per connection');
  const auth = await second.c.authPlain(number, 'secret pw');
  t.equal(auth.name, 'features', 'logs in on the same stream');
  t.equal(await second.c.bind('r'), `${number}@localhost/r`);
  second.c.end();
});

t.test('bad submissions', async (t) => {
  const { c } = await secureStream();
  const missing = await submitForm(c, { username: '+4915112345670' });
  t.equal(condition(missing), 'not-acceptable', 'no password (XEP-0077: not-acceptable)');
  const invalid = await submitForm(c, { username: '+491511234', password: 'pw' });
  t.equal(condition(invalid), 'not-acceptable', 'a number that cannot exist');
  const spaced = await submitForm(c, { username: '+49 1511 2345670', password: 'pw' });
  t.match(spaced.getChild('error')?.getChildText('text'), /\+4915112345670/, 'suggests the E.164 form');
  const shortPin = await submitForm(c, { username: '+4915112345670', password: 'pw', pin: '12' });
  t.equal(condition(shortPin), 'not-acceptable');
  t.equal(smsTo('+4915112345670').length, 0, 'none of these sent an SMS');
  const type = await submitForm(c, { username: '+4915112345670', password: 'pw' }, 'urn:other');
  t.equal(condition(type), 'bad-request', 'a foreign FORM_TYPE');
  const remove = await iq(c, `<query xmlns='${NS}'><remove/></query>`, "type='set'");
  t.equal(condition(remove), 'unexpected-request', 'removal before login');

  // A legacy client (no forms) gets the first step; the PIN needs the form.
  const legacy = await iq(c, `<query xmlns='${NS}'><username>+4915112345671</username><password>pw</password></query>`, "type='set'");
  t.equal(condition(legacy), 'not-acceptable');
  t.ok(fieldVars(legacy).includes('pin'));
  t.equal(smsTo('+4915112345671').length, 1);
  c.end();
});

t.test('the last wrong PIN invalidates it; the next submit sends a new one', async (t) => {
  const number = '+4915112345672';
  const { c } = await secureStream();
  await submitForm(c, { username: number, password: 'pw' });
  const pin = lastPin(number);
  const wrong = pin === '000000' ? '111111' : '000000';
  await submitForm(c, { username: number, password: 'pw', pin: wrong });
  await submitForm(c, { username: number, password: 'pw', pin: wrong });
  const third = await submitForm(c, { username: number, password: 'pw', pin: wrong });
  t.match(third.getChild('error')?.getChildText('text'), /new one/);
  t.notOk(fieldVars(third).includes('pin'), 'no PIN field: the form must be submitted without one');
  const retry = await submitForm(c, { username: number, password: 'pw', pin });
  t.equal(condition(retry), 'not-acceptable', 'the old PIN no longer works');
  t.equal(smsTo(number).length, 2, 'and a new one was sent');
  const done = await submitForm(c, { username: number, password: 'pw', pin: lastPin(number) });
  t.equal(done.attrs.type, 'result');
  c.end();
});

t.test('registration switched off, and unencrypted streams', async (t) => {
  const closed = await secureStream('closed.test');
  t.notOk(closed.features.getChild('register', NS_FEATURE), 'no register feature when disabled');
  const get = await iq(closed.c, `<query xmlns='${NS}'/>`, "type='get'");
  t.equal(condition(get), 'service-unavailable', 'the form: service-unavailable (XEP-0077 §3.1)');
  const set = await submitForm(closed.c, { username: '+4915112345673', password: 'pw' });
  t.equal(condition(set), 'not-allowed');
  t.equal(set.getChild('error')?.attrs.code, '405');
  t.equal(smsTo('+4915112345673').length, 0);
  closed.c.end();

  const plain = await RawClient.connect(srv.c2sPort);
  const features = await plain.open('localhost');
  t.notOk(features.getChild('register', NS_FEATURE), 'not offered without TLS');
  const refused = await submitForm(plain, { username: '+4915112345673', password: 'pw' });
  t.equal(condition(refused), 'not-authorized');
  plain.end();
});

t.test('logged in: the registration, a password change, and removal', async (t) => {
  const number = '+4915112345674';
  await srv.register(number, 'old pw');
  await srv.register('bob', 'pw');
  const me = await RawClient.login(srv.c2sPort, number, 'old pw', { resource: 'a' });
  const other = await RawClient.login(srv.c2sPort, number, 'old pw', { resource: 'b' });

  const info = await iq(me, `<query xmlns='${NS}'/>`, "type='get' to='localhost'");
  t.ok(info.getChild('query', NS)?.getChild('registered'), 'registered');
  t.equal(info.getChild('query', NS)?.getChildText('username'), number);

  const wrongUser = await iq(me, `<query xmlns='${NS}'><username>bob</username><password>x</password></query>`, "type='set' to='localhost'");
  t.equal(condition(wrongUser), 'bad-request', 'not your username');
  t.equal(wrongUser.getChild('error')?.attrs.code, '400');
  const empty = await iq(me, `<query xmlns='${NS}'><username>${number}</username><password/></query>`, "type='set' to='localhost'");
  t.equal(condition(empty), 'bad-request', 'an empty password never replaces the password');
  const changed = await iq(me, `<query xmlns='${NS}'><username>${number}</username><password>new pw</password></query>`, "type='set' to='localhost'");
  t.equal(changed.attrs.type, 'result');
  t.equal(await other.streamError(), 'reset', 'the other session ends');
  await t.rejects(RawClient.login(srv.c2sPort, number, 'old pw'), /login failed/, 'old password refused');

  // A contact with a mutual subscription hears of the removal.
  const rosterApi = srv.server.host('localhost')!.services.get('roster') as RosterApi;
  // Bob's side first: the other upsert makes the server probe bob, who must already agree.
  await rosterApi.upsert('bob@localhost', { jid: `${number}@localhost`, groups: [], subscription: 'both' });
  await rosterApi.upsert(`${number}@localhost`, { jid: 'bob@localhost', groups: [], subscription: 'both' });
  const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'b', presence: false });
  await iq(bob, "<query xmlns='jabber:iq:roster'/>", "type='get'");

  const removed = await iq(me, `<query xmlns='${NS}'><remove/></query>`, "type='set'");
  t.equal(removed.attrs.type, 'result', 'the result comes first');
  t.equal(await me.streamError(), 'not-authorized', 'then the stream ends');
  t.notOk(await srv.server.accounts.exists(number, 'localhost'), 'the account is gone');
  // Two pushes (unsubscribe and unsubscribed, RFC 6121 §2.5.2); the last one leaves nothing.
  const item = (el: Element) => (el.name === 'iq' && el.attrs.type === 'set' ? el.getChild('query', 'jabber:iq:roster')?.getChild('item') : undefined);
  const push = await bob.next((el) => item(el)?.attrs.jid === `${number}@localhost` && item(el)?.attrs.subscription === 'none');
  t.ok(push, "the contact's subscription is cancelled in both directions");
  t.same(await rosterApi.items(`${number}@localhost`), [], 'the removed account keeps no roster');
  bob.end();
});

t.test('SMS requests are throttled per client address (resource-constraint)', async (t) => {
  const log = path.join(dir, 'throttled-sms.log');
  const tight = await startTestServer({
    modules: ['  disco: {}', '  phone:', '    throttle:', '      ip: [{window: 1m, max: 1}]', '    sms:', `      log_file: ${JSON.stringify(log)}`, '  register: {}'].join('\n'),
  });
  t.teardown(() => tight.close());
  const open = async () => {
    const c = await RawClient.connect(tight.c2sPort);
    await c.open('localhost');
    await c.starttls('localhost');
    return c;
  };
  const c = await open();
  t.equal(condition(await submitForm(c, { username: '+4915112345681', password: 'pw' })), 'not-acceptable', 'the first SMS goes out');
  c.end();
  const d = await open();
  const second = await submitForm(d, { username: '+4915112345682', password: 'pw' });
  t.equal(condition(second), 'resource-constraint', 'the second from the same address, even on a new stream');
  t.equal(second.getChild('error')?.attrs.type, 'wait');
  t.match(second.getChild('error')?.getChildText('text'), /try again in/);
  t.notOk(existsSync(log) && readFileSync(log, 'utf8').includes('+4915112345682'), 'no SMS');
  d.end();
});
