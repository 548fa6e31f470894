// XEP-0313 user archives between real sessions: paging both ways over 100 messages (also while
// new ones arrive), every filter and its errors, preferences, the stanza-id that is the same in the
// live copy, the carbons and the archive, what is not archived, and retention.
import { parse, type Element } from 'ltx';
import t, { type Test } from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const NS_MAM = 'urn:xmpp:mam:2';
const NS_SID = 'urn:xmpp:sid:0';
const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_RSM = 'http://jabber.org/protocol/rsm';
const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';

const srv = await startTestServer({
  modules: '  disco: {}\n  roster: {}\n  presence: {}\n  carbons: {}\n  mam:\n    default_page: 20\n    max_page: 50',
});
t.teardown(() => srv.close());

let users = 0;
/** A fresh account per test, so the archives of one test never hold another's messages. */
async function user(): Promise<string> {
  const name = `u${++users}`;
  await srv.register(name, 'pw');
  return name;
}
const bare = (name: string) => `${name}@localhost`;

let ids = 0;
async function login(name: string, resource: string, o: { priority?: number; carbons?: boolean } = {}): Promise<RawClient> {
  const presence = o.priority === undefined ? '<presence/>' : `<presence><priority>${o.priority}</priority></presence>`;
  const c = await RawClient.login(srv.c2sPort, name, 'pw', { resource, presence });
  if (o.carbons) await iq(c, `<iq type='set' id='ID'><enable xmlns='${NS_CARBONS}'/></iq>`, 'result');
  return c;
}

/** Sends an IQ (ID is replaced by a fresh id) and returns the answer, checking its type. */
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

const isMessage = (el: Element) => el.name === 'message';
/** The next message that carries a body (results and carbons of other tests are not bodies). */
const nextChat = (c: RawClient, timeoutMs?: number) => c.next((el) => isMessage(el) && el.getChild('body') !== undefined, timeoutMs);

function chat(to: string, body: string, extra = ''): string {
  return `<message to='${to}' type='chat' id='m${++ids}'><body>${body}</body>${extra}</message>`;
}

interface Result { id: string; stamp: string; message: Element; body: string | null }
interface Answer { iq: Element; results: Result[]; fin?: Element; first?: string; last?: string; count?: number; index?: number; complete: boolean }

interface QueryOptions {
  fields?: Record<string, string | string[]>;
  max?: number;
  after?: string;
  before?: string;
  flip?: boolean;
  ns?: string;
  to?: string;
  /** Raw extra XML inside <query/>. */
  raw?: string;
}

/** Runs a MAM query and collects its results up to the IQ answer (mam:0: up to the fin message). */
async function mam(c: RawClient, o: QueryOptions = {}): Promise<Answer> {
  const ns = o.ns ?? NS_MAM;
  const qid = `q${++ids}`;
  const id = `iq${++ids}`;
  let form = '';
  if (o.fields) {
    form = `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>${ns}</value></field>`;
    for (const [name, value] of Object.entries(o.fields)) {
      const values = Array.isArray(value) ? value : [value];
      form += `<field var='${name}'>${values.map((v) => `<value>${v}</value>`).join('')}</field>`;
    }
    form += '</x>';
  }
  let rsm = '';
  if (o.max !== undefined || o.after !== undefined || o.before !== undefined) {
    rsm = `<set xmlns='${NS_RSM}'>`;
    if (o.max !== undefined) rsm += `<max>${o.max}</max>`;
    if (o.after !== undefined) rsm += `<after>${o.after}</after>`;
    if (o.before !== undefined) rsm += o.before === '' ? '<before/>' : `<before>${o.before}</before>`;
    rsm += '</set>';
  }
  const to = o.to ? ` to='${o.to}'` : '';
  c.send(`<iq type='set' id='${id}'${to}><query xmlns='${ns}' queryid='${qid}'>${form}${rsm}${o.flip ? '<flip-page/>' : ''}${o.raw ?? ''}</query></iq>`);
  const results: Result[] = [];
  let iqAnswer: Element | undefined;
  let fin: Element | undefined;
  for (;;) {
    const el = await c.next((e) => (e.name === 'iq' && e.attrs.id === id) || (isMessage(e)
      && (e.getChild('result', ns)?.attrs.queryid === qid || e.getChild('fin', ns)?.attrs.queryid === qid)));
    if (el.name === 'iq') {
      iqAnswer = el;
      if (el.attrs.type !== 'result' || ns !== 'urn:xmpp:mam:0' || fin) break;
      continue;
    }
    const finMessage = el.getChild('fin', ns);
    if (finMessage) {
      fin = finMessage;
      if (iqAnswer) break;
      continue;
    }
    const result = el.getChild('result', ns)!;
    const forwarded = result.getChild('forwarded', NS_FORWARD)!;
    const message = forwarded.getChild('message')!;
    results.push({ id: result.attrs.id, stamp: forwarded.getChild('delay')!.attrs.stamp, message, body: message.getChildText('body') });
  }
  fin ??= iqAnswer.getChild('fin', ns);
  const set = fin?.getChild('set', NS_RSM);
  const answer: Answer = { iq: iqAnswer, results, complete: fin?.attrs.complete === 'true' };
  if (fin) answer.fin = fin;
  const first = set?.getChild('first');
  if (first) answer.first = first.getText();
  if (first?.attrs.index !== undefined) answer.index = Number(first.attrs.index);
  const last = set?.getChildText('last');
  if (last) answer.last = last;
  const count = set?.getChildText('count');
  if (count !== null && count !== undefined) answer.count = Number(count);
  return answer;
}

/** The stanza-ids of a stanza, by their `by`. */
function stanzaIds(el: Element): Array<{ by: string; id: string }> {
  return el.getChildren('stanza-id', NS_SID).map((s) => ({ by: s.attrs.by, id: s.attrs.id }));
}

/** A server of its own (other module options) with these users, closed with the test; returns its login. */
async function ownServer(t: Test, modules: string, names: string[]): Promise<(name: string) => Promise<RawClient>> {
  const own = await startTestServer({ modules });
  t.teardown(() => own.close());
  for (const n of names) await own.register(n, 'pw');
  return (name) => RawClient.login(own.c2sPort, name, 'pw', { resource: 'r' });
}

function end(...clients: RawClient[]): void {
  for (const c of clients) c.end();
}

/** A writes `n` messages to B's bare JID and B receives all of them; returns their bodies. */
async function converse(a: RawClient, b: RawClient, to: string, n: number, prefix: string): Promise<string[]> {
  const bodies: string[] = [];
  for (let i = 0; i < n; i++) {
    const body = `${prefix}${i}`;
    bodies.push(body);
    a.send(chat(to, body));
  }
  for (const body of bodies) {
    const got = await nextChat(b);
    if (got.getChildText('body') !== body) throw new Error(`expected ${body}, got ${got.toString()}`);
  }
  return bodies;
}

t.test('the account advertises MAM and stanza-ids', async (t) => {
  const a = await user();
  const c = await login(a, 'r');
  const info = await iq(c, `<iq type='get' id='ID' to='${bare(a)}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, 'result');
  const features = info.getChild('query')!.getChildren('feature').map((f) => f.attrs.var);
  for (const f of [NS_MAM, 'urn:xmpp:mam:2#extended', NS_SID, 'urn:xmpp:mam:1', 'urn:xmpp:mam:0']) t.ok(features.includes(f), f);
  const form = await iq(c, `<iq type='get' id='ID'><query xmlns='${NS_MAM}'/></iq>`, 'result');
  const fields = form.getChild('query', NS_MAM)!.getChild('x', 'jabber:x:data')!.getChildren('field');
  t.same(fields.map((f) => f.attrs.var), ['FORM_TYPE', 'with', 'start', 'end', 'before-id', 'after-id', 'ids']);
  t.equal(fields.find((f) => f.attrs.var === 'ids')!.attrs.type, 'list-multi');
  t.equal(fields.find((f) => f.attrs.var === 'FORM_TYPE')!.getChildText('value'), NS_MAM);
  end(c);
});

t.test('paging forward and backward over 100 messages gives each once, in order', async (t) => {
  const [a, b] = [await user(), await user()];
  const ca = await login(a, 'r');
  const cb = await login(b, 'r');
  const bodies = await converse(ca, cb, bare(b), 100, 'm');

  // Forward: the first page without a cursor, then after the last id of each page.
  const forward: string[] = [];
  const seenIds = new Set<string>();
  let after: string | undefined;
  let pages = 0;
  for (;;) {
    const page = await mam(cb, after === undefined ? { max: 10 } : { max: 10, after });
    t.equal(page.iq.attrs.type, 'result');
    t.equal(page.count, 100, 'count is the whole result set');
    t.equal(page.index, pages * 10, 'index of the first item');
    t.equal(page.first, page.results[0]?.id);
    t.equal(page.last, page.results.at(-1)?.id);
    for (const r of page.results) {
      t.notOk(seenIds.has(r.id), 'no id twice');
      seenIds.add(r.id);
      forward.push(r.body!);
    }
    pages++;
    if (page.complete) break;
    t.equal(page.results.length, 10, 'a page that is not the last is full');
    after = page.last;
    if (pages > 20) throw new Error('paging does not end');
  }
  t.same(forward, bodies, 'forward: every message once, in order');
  t.equal(pages, 10, '10 pages; the last one says complete');

  // Backward: the last page (empty <before/>), then before the first id of each page.
  const backward: string[][] = [];
  let before = '';
  for (let i = 0; ; i++) {
    const page = await mam(cb, { max: 15, before });
    t.equal(page.index, undefined, 'no index on a page taken backwards (slixmpp would stop paging)');
    t.equal(page.count, 100);
    backward.unshift(page.results.map((r) => r.body!));
    if (page.complete) break;
    before = page.first!;
    if (i > 20) throw new Error('paging does not end');
  }
  t.same(backward.flat(), bodies, 'backward: every message once, in order within and across pages');
  t.equal(backward[0]!.length, 10, 'the earliest page holds the rest');

  // The sender's archive has the same conversation.
  const sent = await mam(ca, { fields: { with: bare(b) }, max: 50, before: '' });
  t.same(sent.results.map((r) => r.body), bodies.slice(50));
  t.equal(sent.results[0]!.message.attrs.from, `${bare(a)}/r`, 'archived as sent, with from');
  t.equal(sent.results[0]!.message.attrs.to, bare(b));
  end(ca, cb);
});

t.test('paging stays in order while new messages are archived', async (t) => {
  const [a, b] = [await user(), await user()];
  const ca = await login(a, 'r');
  const cb = await login(b, 'r');
  const first = await converse(ca, cb, bare(b), 30, 'x');
  const got: string[] = [];
  let page = await mam(cb, { max: 10 });
  got.push(...page.results.map((r) => r.body!));
  // New messages arrive between two pages, and while a page is being read.
  const more = await converse(ca, cb, bare(b), 15, 'y');
  for (;;) {
    page = await mam(cb, { max: 10, after: page.last! });
    got.push(...page.results.map((r) => r.body!));
    if (got.length === 20) ca.send(chat(bare(b), 'z0'));
    if (page.complete) break;
  }
  await nextChat(cb);
  const expected = [...first, ...more];
  t.same(got.slice(0, expected.length), expected, 'each message once, in archive order');
  t.ok(got.length === expected.length || (got.length === expected.length + 1 && got.at(-1) === 'z0'));
  end(ca, cb);
});

t.test('filters: with, start and end, ids, after-id and before-id, flip-page, max 0', async (t) => {
  const [a, b, c] = [await user(), await user(), await user()];
  const ca = await login(a, 'r');
  const cb = await login(b, 'r');
  const cc1 = await login(c, 'one');
  const cc2 = await login(c, 'two');
  await converse(ca, cb, bare(b), 3, 'toB');
  await converse(ca, cc1, `${bare(c)}/one`, 2, 'toC');
  cc1.send(chat(bare(a), 'fromC1'));
  await nextChat(ca);
  cc2.send(chat(bare(a), 'fromC2'));
  await nextChat(ca);

  const all = await mam(ca);
  t.same(all.results.map((r) => r.body), ['toB0', 'toB1', 'toB2', 'toC0', 'toC1', 'fromC1', 'fromC2']);
  t.equal(all.count, 7);
  t.ok(all.complete);

  const withB = await mam(ca, { fields: { with: bare(b) } });
  t.same(withB.results.map((r) => r.body), ['toB0', 'toB1', 'toB2'], 'with a bare JID');
  t.equal(withB.count, 3);
  const withC = await mam(ca, { fields: { with: bare(c) } });
  t.same(withC.results.map((r) => r.body), ['toC0', 'toC1', 'fromC1', 'fromC2'], 'a bare JID matches every resource');
  const withC1 = await mam(ca, { fields: { with: `${bare(c)}/one` } });
  t.same(withC1.results.map((r) => r.body), ['toC0', 'toC1', 'fromC1'], 'a full JID matches that resource only');
  const withC1Paged = await mam(ca, { fields: { with: `${bare(c)}/one` }, max: 2 });
  t.same(withC1Paged.results.map((r) => r.body), ['toC0', 'toC1']);
  t.notOk(withC1Paged.complete, 'a page of a full-JID query that is not the last');
  const withC1Last = await mam(ca, { fields: { with: `${bare(c)}/one` }, max: 2, after: withC1Paged.last! });
  t.same(withC1Last.results.map((r) => r.body), ['fromC1']);
  t.ok(withC1Last.complete);

  // Time range: the expectation is computed from the stamps, which may tie.
  const stamps = all.results.map((r) => Date.parse(r.stamp));
  const [start, stop] = [stamps[1]!, stamps[4]!];
  const ranged = await mam(ca, { fields: { start: new Date(start).toISOString(), end: new Date(stop).toISOString() } });
  t.same(ranged.results.map((r) => r.body), all.results.filter((_, i) => stamps[i]! >= start && stamps[i]! <= stop).map((r) => r.body),
    'start and end are inclusive bounds on the archive time');
  t.ok(ranged.results.length >= 4);
  const future = await mam(ca, { fields: { start: new Date(Date.now() + 60_000).toISOString().replace('.000Z', 'Z') } });
  t.same(future.results, [], 'nothing after a future start');
  t.ok(future.complete);
  t.equal(future.count, 0);

  const idsOf = all.results.map((r) => r.id);
  const picked = await mam(ca, { fields: { ids: [idsOf[5]!, idsOf[1]!] } });
  t.same(picked.results.map((r) => r.id), [idsOf[1], idsOf[5]], 'ids: those messages, in archive order');
  const between = await mam(ca, { fields: { 'after-id': idsOf[1]!, 'before-id': idsOf[5]! } });
  t.same(between.results.map((r) => r.body), ['toB2', 'toC0', 'toC1'], 'after-id and before-id are exclusive bounds');
  t.equal(between.count, 3, 'count covers the bounded set');
  const betweenPaged = await mam(ca, { fields: { 'after-id': idsOf[1]! }, after: idsOf[3]!, max: 2 });
  t.same(betweenPaged.results.map((r) => r.body), ['toC1', 'fromC1'], 'RSM after pages inside after-id');
  const looser = await mam(ca, { fields: { 'after-id': idsOf[3]! }, after: idsOf[1]! });
  t.same(looser.results.map((r) => r.body), ['toC1', 'fromC1', 'fromC2'], 'the tighter of after-id and RSM after wins');
  const lastBefore = await mam(ca, { fields: { 'before-id': idsOf[4]! }, before: '', max: 2 });
  t.same(lastBefore.results.map((r) => r.body), ['toB2', 'toC0'], 'the last page before before-id');

  const flipped = await mam(ca, { max: 3, flip: true });
  t.same(flipped.results.map((r) => r.body), ['toB2', 'toB1', 'toB0'], 'flip-page sends the page newest first');
  t.equal(flipped.first, idsOf[0], 'the page itself is the same');
  t.equal(flipped.last, idsOf[2]);

  const counted = await mam(ca, { max: 0 });
  t.same(counted.results, [], 'max 0 returns no messages');
  t.equal(counted.count, 7);
  t.notOk(counted.first);
  t.notOk(counted.complete);

  const meta = await iq(ca, `<iq type='get' id='ID'><metadata xmlns='${NS_MAM}'/></iq>`, 'result');
  const m = meta.getChild('metadata', NS_MAM)!;
  t.equal(m.getChild('start')!.attrs.id, idsOf[0]);
  t.equal(m.getChild('end')!.attrs.id, idsOf[6]);
  t.equal(m.getChild('end')!.attrs.timestamp, all.results[6]!.stamp);
  end(ca, cb, cc1, cc2);
});

t.test('bad queries get the right errors', async (t) => {
  const [a, b] = [await user(), await user()];
  const ca = await login(a, 'r');
  const cb = await login(b, 'r');
  await converse(ca, cb, bare(b), 1, 'e');
  const cases: Array<[string, QueryOptions, string]> = [
    ['unknown after', { after: '0000000000000000000000000' }, 'item-not-found'],
    ['unknown before', { before: 'nope' }, 'item-not-found'],
    ['unknown after-id', { fields: { 'after-id': 'nope' } }, 'item-not-found'],
    ['unknown id in ids', { fields: { ids: ['nope'] } }, 'item-not-found'],
    ['bad start', { fields: { start: 'yesterday' } }, 'bad-request'],
    ['date without seconds', { fields: { end: '2024-01-01T10:00Z' } }, 'bad-request'],
    ['bad with', { fields: { with: 'a@@b' } }, 'bad-request'],
    ['unknown field', { fields: { 'include-groupchat': 'true' } }, 'feature-not-implemented'],
    ['two values for with', { fields: { with: [bare(b), bare(a)] } }, 'bad-request'],
    ['bad max', { max: -1 }, 'bad-request'],
    ['paging by index', { raw: `<set xmlns='${NS_RSM}'><index>3</index></set>` }, 'feature-not-implemented'],
    ['another user\'s archive', { to: bare(b) }, 'forbidden'],
    ['extended fields in mam:1', { ns: 'urn:xmpp:mam:1', fields: { 'after-id': 'x' } }, 'feature-not-implemented'],
  ];
  for (const [name, o, condition] of cases) {
    const answer = await mam(ca, o);
    t.equal(answer.iq.attrs.type, 'error', name);
    t.equal(errorCondition(answer.iq), condition, name);
    t.same(answer.results, [], `${name}: no results before the error`);
  }
  const wrongType = `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:1</value></field></x>`;
  const answer = await iq(ca, `<iq type='set' id='ID'><query xmlns='${NS_MAM}'>${wrongType}</query></iq>`);
  t.equal(errorCondition(answer), 'bad-request', 'wrong FORM_TYPE');
  const formOfOther = await iq(ca, `<iq type='get' id='ID' to='${bare(b)}'><query xmlns='${NS_MAM}'/></iq>`);
  t.equal(errorCondition(formOfOther), 'forbidden');
  end(ca, cb);
});

t.test('mam:1 and mam:0 queries', async (t) => {
  const [a, b] = [await user(), await user()];
  const ca = await login(a, 'r');
  const cb = await login(b, 'r');
  await converse(ca, cb, bare(b), 3, 'old');
  const v1 = await mam(ca, { ns: 'urn:xmpp:mam:1', fields: { with: bare(b) }, max: 2 });
  t.same(v1.results.map((r) => r.body), ['old0', 'old1']);
  t.equal(v1.fin?.attrs.xmlns, 'urn:xmpp:mam:1', 'fin in the IQ result, in mam:1');
  t.notOk(v1.complete);
  const v0 = await mam(ca, { ns: 'urn:xmpp:mam:0', after: v1.last! });
  t.same(v0.results.map((r) => r.body), ['old2']);
  t.equal(v0.iq.children.length, 0, 'mam:0: an empty IQ result');
  t.ok(v0.complete, 'mam:0: fin in a message, complete');
  end(ca, cb);
});

t.test('stanza-id: the same in the live copy, the carbons and both archives; forged ones removed', async (t) => {
  const [a, b] = [await user(), await user()];
  const a1 = await login(a, 'one');
  const a2 = await login(a, 'two', { carbons: true });
  const b1 = await login(b, 'one', { priority: 5, carbons: true });
  const b2 = await login(b, 'two', { priority: 0, carbons: true });
  const forged = `<stanza-id xmlns='${NS_SID}' by='${bare(b)}' id='forged-b'/><stanza-id xmlns='${NS_SID}' by='${bare(a)}' id='forged-a'/>`;
  a1.send(chat(bare(b), 'hello', forged));

  const live = await nextChat(b1);
  const liveIds = stanzaIds(live);
  t.equal(liveIds.length, 1, 'one stanza-id reaches the recipient');
  t.equal(liveIds[0]!.by, bare(b), 'by the recipient\'s archive');
  t.not(liveIds[0]!.id, 'forged-b', 'the forged one was replaced');
  const id = liveIds[0]!.id;

  const carbon = await b2.next(isMessage);
  const received = carbon.getChild('received', NS_CARBONS)!.getChild('forwarded', NS_FORWARD)!.getChild('message')!;
  t.same(stanzaIds(received), [{ by: bare(b), id }], 'the received carbon carries the same stanza-id');

  const sentCarbon = await a2.next(isMessage);
  const sent = sentCarbon.getChild('sent', NS_CARBONS)!.getChild('forwarded', NS_FORWARD)!.getChild('message')!;
  // (The forged by=b one is what the client sent; b's server removes it, as seen above.)
  const sentIds = stanzaIds(sent).filter((s) => s.by === bare(a));
  t.equal(sentIds.length, 1, 'the sent carbon carries the sender\'s stanza-id');
  t.not(sentIds[0]!.id, 'forged-a', 'not the forged one');

  const inB = await mam(b1, { fields: { ids: id } });
  t.equal(inB.results.length, 1);
  t.equal(inB.results[0]!.id, id, 'the recipient\'s archive has it under that id');
  t.equal(inB.results[0]!.body, 'hello');
  t.same(stanzaIds(inB.results[0]!.message).filter((s) => s.id.startsWith('forged')), [], 'no forged id is archived');
  const inA = await mam(a1, { fields: { ids: sentIds[0]!.id } });
  t.equal(inA.results[0]?.body, 'hello', 'the sender\'s archive has it under the sent carbon\'s id');

  // The server routes the same message again (as stream management does with a dying session's
  // unacknowledged messages): it keeps its stanza-id and is not archived twice.
  const again = parse(live.toString());
  again.attrs.to = bare(b);
  delete again.attrs.xmlns;
  await srv.server.route(again);
  const rerouted = await nextChat(b1);
  t.same(stanzaIds(rerouted), [{ by: bare(b), id }], 'routed again: the same stanza-id');
  t.same((await mam(b1)).results.map((r) => r.id), [id], 'and archived once');

  // A note to oneself is archived once, with a stanza-id of the own archive.
  a1.send(chat(bare(a), 'note'));
  const note = await nextChat(a1);
  const noteIds = stanzaIds(note);
  t.equal(noteIds.length, 1);
  const own = await mam(a1, { fields: { with: bare(a) } });
  t.same(own.results.map((r) => [r.id, r.body]), [[noteIds[0]!.id, 'note']], 'archived once; with = own JID');
  end(a1, a2, b1, b2);
});

t.test('what is archived and what is not', async (t) => {
  const [a, b] = [await user(), await user()];
  const ca = await login(a, 'r');
  const cb = await login(b, 'r');
  const to = bare(b);
  const sends = [
    `<message to='${to}' type='chat' id='s1'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`,
    `<message to='${to}' type='headline' id='s2'><body>news</body></message>`,
    `<message to='${to}' type='chat' id='s3'><body>secret</body><no-store xmlns='urn:xmpp:hints'/></message>`,
    `<message to='${to}' type='chat' id='s4'><body>ephemeral</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>`,
    `<message to='${to}' id='s5'><subject>no body</subject></message>`,
    `<message to='${to}' type='chat' id='s6'><active xmlns='http://jabber.org/protocol/chatstates'/><store xmlns='urn:xmpp:hints'/></message>`,
    `<message to='${to}' type='chat' id='s7'><body>kept</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`,
    `<message to='${to}' type='chat' id='s8'><displayed xmlns='urn:xmpp:chat-markers:0' id='s7'/></message>`,
    `<message to='${to}' id='s9'><body>normal with body</body></message>`,
  ];
  for (const s of sends) ca.send(s);
  // Sessions handle stanzas in order: once the last one arrived, all were archived or not.
  await cb.next((el) => el.attrs.id === 's9');
  const archived = await mam(cb);
  t.same(archived.results.map((r) => r.message.attrs.id), ['s6', 's7', 's8', 's9']);
  const kept = archived.results.find((r) => r.message.attrs.id === 's7')!.message;
  t.notOk(kept.getChild('active', 'http://jabber.org/protocol/chatstates'), 'chat states are left out of the archived copy');
  const sent = await mam(ca);
  t.same(sent.results.map((r) => r.message.attrs.id), ['s6', 's7', 's8', 's9'], 'the same rules for the sender\'s copy');
  end(ca, cb);
});

t.test('a message bounced for want of a recipient stays out of the recipient\'s archive', async (t) => {
  const [a, b] = [await user(), await user()];
  const ca = await login(a, 'r');
  // b is offline and this server stores nothing offline: the message is bounced.
  ca.send(`<message to='${bare(b)}' type='chat' id='lost'><body>nobody home</body></message>`);
  const bounce = await ca.next((el) => el.attrs.id === 'lost');
  t.equal(bounce.attrs.type, 'error');
  t.equal(errorCondition(bounce), 'service-unavailable');
  t.same(stanzaIds(bounce).filter((s) => s.by === bare(b)), [], 'the bounce names no archive id of the recipient');
  const cb = await login(b, 'r');
  const archived = await mam(cb);
  t.same(archived.results, [], 'not in the recipient\'s archive');
  t.equal(archived.count, 0);
  const sent = await mam(ca);
  t.same(sent.results.map((r) => r.body), ['nobody home'], 'the sender\'s archive shows what was sent');
  end(ca, cb);
});

t.test('a message a full offline spool refuses stays out of the recipient\'s archive', async (t) => {
  const ownLogin = await ownServer(t, '  disco: {}\n  offline:\n    max_messages: 1\n  mam: {}', ['p', 'q']);
  const cp = await ownLogin('p');
  cp.send("<message to='q@localhost' type='chat' id='kept'><body>first</body></message>");
  cp.send("<message to='q@localhost' type='chat' id='over'><body>second</body></message>");
  const refusal = await cp.next((el) => el.attrs.id === 'over');
  t.equal(refusal.attrs.type, 'error');
  t.equal(errorCondition(refusal), 'resource-constraint');
  t.same(stanzaIds(refusal).filter((s) => s.by === 'q@localhost'), [], 'the refusal names no archive id of the recipient');
  const cq = await ownLogin('q');
  t.same((await mam(cq)).results.map((r) => r.body), ['first'], 'only the stored message is in the recipient\'s archive');
  t.same((await mam(cp)).results.map((r) => r.body), ['first', 'second'], 'the sender\'s archive shows what was sent');
  end(cp, cq);
});

t.test('preferences: never, always and roster', async (t) => {
  const [a, b, c] = [await user(), await user(), await user()];
  const ca = await login(a, 'r');
  const cb = await login(b, 'r');
  const cc = await login(c, 'r');

  const initial = await iq(ca, `<iq type='get' id='ID'><prefs xmlns='${NS_MAM}'/></iq>`, 'result');
  const p = initial.getChild('prefs', NS_MAM)!;
  t.equal(p.attrs.default, 'always', 'the configured default');
  t.ok(p.getChild('always') && p.getChild('never'), 'both lists, even empty');

  const set = await iq(ca, `<iq type='set' id='ID'><prefs xmlns='${NS_MAM}' default='always'><always><jid>${bare(c)}</jid></always>`
    + `<never><jid>${bare(c)}</jid><jid>${bare(c)}</jid></never></prefs></iq>`, 'result');
  const applied = set.getChild('prefs', NS_MAM)!;
  t.same(applied.getChild('never')!.getChildren('jid').map((j) => j.getText()), [bare(c)], 'kept once');
  t.same(applied.getChild('always')!.getChildren('jid'), [], 'never wins over always');

  await converse(ca, cb, bare(b), 1, 'B');
  await converse(ca, cc, bare(c), 1, 'C');
  cc.send(chat(bare(a), 'from C'));
  const fromC = await nextChat(ca);
  t.same(stanzaIds(fromC), [], 'a message not archived carries no stanza-id');
  cb.send(chat(bare(a), 'from B'));
  t.equal(stanzaIds(await nextChat(ca)).length, 1);
  t.same((await mam(ca)).results.map((r) => r.body), ['B0', 'from B'], 'never: neither direction is archived');
  t.same((await mam(cc)).results.map((r) => r.body), ['C0', 'from C'], 'the contact\'s own archive is not affected');

  // roster: b is a contact, c is not; c listed under always is archived all the same.
  await iq(ca, `<iq type='set' id='ID'><query xmlns='jabber:iq:roster'><item jid='${bare(b)}'/></query></iq>`, 'result');
  await iq(ca, `<iq type='set' id='ID'><prefs xmlns='${NS_MAM}' default='roster'><always/><never/></prefs></iq>`, 'result');
  const got = await iq(ca, `<iq type='get' id='ID'><prefs xmlns='urn:xmpp:mam:1'/></iq>`, 'result');
  t.equal(got.getChild('prefs', 'urn:xmpp:mam:1')!.attrs.default, 'roster', 'stored, and readable in mam:1');
  await converse(ca, cb, bare(b), 1, 'rB');
  await converse(ca, cc, bare(c), 1, 'rC');
  await iq(ca, `<iq type='set' id='ID'><prefs xmlns='${NS_MAM}' default='roster'><always><jid>${bare(c)}/r</jid></always></prefs></iq>`, 'result');
  await converse(ca, cc, `${bare(c)}/r`, 1, 'aC');
  await converse(ca, cc, bare(c), 1, 'bareC');
  t.same((await mam(ca)).results.map((r) => r.body), ['B0', 'from B', 'rB0', 'aC0'],
    'roster: contacts only; a listed full JID matches that resource only');

  const errors: Array<[string, string]> = [
    [`<prefs xmlns='${NS_MAM}' default='sometimes'/>`, 'bad-request'],
    [`<prefs xmlns='${NS_MAM}'><always/></prefs>`, 'bad-request'],
    [`<prefs xmlns='${NS_MAM}' default='always'><never><jid>a@@b</jid></never></prefs>`, 'jid-malformed'],
  ];
  for (const [payload, condition] of errors) {
    t.equal(errorCondition(await iq(ca, `<iq type='set' id='ID'>${payload}</iq>`, 'error')), condition, payload);
  }
  t.equal(errorCondition(await iq(ca, `<iq type='get' id='ID' to='${bare(b)}'><prefs xmlns='${NS_MAM}'/></iq>`, 'error')), 'forbidden');
  const still = await iq(ca, `<iq type='get' id='ID'><prefs xmlns='${NS_MAM}'/></iq>`, 'result');
  t.same(still.getChild('prefs', NS_MAM)!.getChild('always')!.getChildren('jid').map((j) => j.getText()), [`${bare(c)}/r`],
    'a refused set changes nothing');
  end(ca, cb, cc);
});

t.test('retention: archived messages expire', async (t) => {
  const ownLogin = await ownServer(t, '  disco: {}\n  mam:\n    retention: 300ms', ['x', 'y']);
  const [cx, cy] = [await ownLogin('x'), await ownLogin('y')];
  await converse(cx, cy, 'y@localhost', 2, 'old');
  const before = await mam(cy);
  t.same(before.results.map((r) => r.body), ['old0', 'old1'], 'archived');
  // Wait for the expiry by asking again (bounded), not by sleeping a fixed time.
  const deadline = Date.now() + 5000;
  let after = before;
  while (after.results.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    after = await mam(cy);
  }
  t.same(after.results, [], 'gone after the retention time');
  t.equal(after.count, 0);
  await converse(cx, cy, 'y@localhost', 1, 'new');
  t.same((await mam(cy)).results.map((r) => r.body), ['new0'], 'new messages are archived as before');
  t.same((await mam(cx)).results.map((r) => r.body), ['new0'], 'in both archives');
  end(cx, cy);
});
