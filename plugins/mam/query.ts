// XEP-0313 queries over an ArchiveStore, for any archive: users' (plugins/mam) and, by the same
// functions, MUC rooms'. The archive owner decides who may query and how its items turn into
// messages; this module turns a <query/> into store reads and the reads into the answer.
//
//   const q = parseMamQuery(payload, { defaultMax: 50, maxMax: 250 });
//   const page = await runMamQuery({ store, owner, withFilter }, q);
//   for (const item of sendingOrder(q, page.items)) send(resultMessage(q, item, messageOf(item), addr));
//   return finElement(q, page);   // the IQ result payload (mam:0: sent as a message, see finMessage)
//
// Order. Items come back in archive order (the store's insertion order), never sorted by
// timestamp: timestamps can tie, and a cursor (an item id) keeps its place however many items are
// written while a client pages, so forward and backward paging see each item exactly once.
//
// Cursors. The form's after-id/before-id bound the result set (so count covers only them); RSM's
// after/before page within it. When both name a lower (or upper) bound, the tighter one wins.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import { Jid } from '../../lib/jid.js';
import { newId } from '../../lib/storage/ids.js';
import { StorageError, type ArchiveItem, type ArchiveQuery, type ArchiveStore, type Json } from '../../lib/storage/types.js';
import { NS_CLIENT } from '../../lib/xml/ns.js';
import {
  childNs, childrenWithNs, NS_DATA, NS_DELAY, NS_FORWARD, NS_HINTS, NS_MAM, NS_MAM_0, NS_MAM_1, NS_RSM, NS_XDATA_VALIDATE,
  parseDateTime, stamp,
} from './xml.js';

/** The namespaces a query may use; results and <fin/> answer in the query's own. */
export const MAM_NAMESPACES: readonly string[] = [NS_MAM, NS_MAM_1, NS_MAM_0];

/** A parsed <query/>: filters of the form, RSM paging and flip-page. */
export interface MamQuery {
  ns: string;
  queryid?: string;
  with?: Jid;
  start?: number;
  end?: number;
  /** Form fields (mam:2#extended): bounds of the result set. */
  afterId?: string;
  beforeId?: string;
  ids?: string[];
  /** RSM: page size (already capped), after, before ('' asks for the last page). */
  max: number;
  after?: string;
  before?: string;
  /** mam:2#extended: send the page newest first (the page itself is the same). */
  flip: boolean;
}

export interface MamLimits {
  /** Page size when the client gives no RSM <max/>. */
  defaultMax: number;
  /** Largest page; a larger <max/> is lowered to it (XEP-0313 'Page limits': the server may limit). */
  maxMax: number;
}

/** Form fields each namespace defines; anything else is refused (XEP-0313 'Retrieving form fields'). */
function fieldsOf(ns: string): ReadonlySet<string> {
  return ns === NS_MAM
    ? new Set(['FORM_TYPE', 'with', 'start', 'end', 'before-id', 'after-id', 'ids'])
    : new Set(['FORM_TYPE', 'with', 'start', 'end']);
}

function single(name: string, values: string[]): string | undefined {
  if (values.length > 1) throw new StanzaError('bad-request', `${name} takes one value`);
  // An empty value is no filter: some clients send every field of the form they were given.
  return values[0] === '' ? undefined : values[0];
}

function dateField(name: string, value: string): number {
  const ms = parseDateTime(value);
  if (ms === undefined) throw new StanzaError('bad-request', `${name} is not an XEP-0082 date-time`);
  return ms;
}

/** Reads a <query/> payload; throws the StanzaError a bad one deserves. */
export function parseMamQuery(payload: Element, limits: MamLimits): MamQuery {
  const ns = payload.attrs.xmlns ?? NS_MAM;
  const q: MamQuery = { ns, max: limits.defaultMax, flip: false };
  if (payload.attrs.queryid !== undefined) q.queryid = payload.attrs.queryid;

  const form = childNs(payload, 'x', NS_DATA);
  if (form) {
    // XEP-0004: a form the client fills in comes back as type 'submit'.
    if (form.attrs.type !== undefined && form.attrs.type !== 'submit') {
      throw new StanzaError('bad-request', 'the query form must be of type submit');
    }
    const known = fieldsOf(ns);
    const seen = new Set<string>();
    for (const { el: field, ns: fieldNs } of childrenWithNs(form, NS_DATA)) {
      if (field.name !== 'field' || fieldNs !== NS_DATA) continue;
      const name = field.attrs.var;
      if (!name) throw new StanzaError('bad-request', 'a form field has no var');
      if (seen.has(name)) throw new StanzaError('bad-request', `field ${name} appears twice`);
      seen.add(name);
      if (!known.has(name)) throw new StanzaError('feature-not-implemented', `unsupported field ${name}`);
      const values = field.getChildren('value').map((v) => v.getText());
      switch (name) {
        case 'FORM_TYPE': {
          const v = single(name, values);
          if (v !== undefined && v !== ns) throw new StanzaError('bad-request', `FORM_TYPE must be ${ns}`);
          break;
        }
        case 'with': {
          const v = single(name, values);
          if (v === undefined) break;
          const jid = Jid.tryParse(v);
          if (!jid) throw new StanzaError('bad-request', 'with is not a valid JID');
          q.with = jid;
          break;
        }
        case 'start': {
          const v = single(name, values);
          if (v !== undefined) q.start = dateField(name, v);
          break;
        }
        case 'end': {
          const v = single(name, values);
          if (v !== undefined) q.end = dateField(name, v);
          break;
        }
        case 'after-id': {
          const v = single(name, values);
          if (v !== undefined) q.afterId = v;
          break;
        }
        case 'before-id': {
          const v = single(name, values);
          if (v !== undefined) q.beforeId = v;
          break;
        }
        case 'ids': {
          const ids = values.filter((v) => v !== '');
          if (ids.length > 0) q.ids = ids;
          break;
        }
      }
    }
  }

  const set = childNs(payload, 'set', NS_RSM);
  if (set) {
    const seen = new Set<string>();
    for (const { el } of childrenWithNs(set, NS_RSM)) {
      if (seen.has(el.name)) throw new StanzaError('bad-request', `RSM ${el.name} appears twice`);
      seen.add(el.name);
      const text = el.getText().trim();
      switch (el.name) {
        case 'max':
          if (!/^\d+$/.test(text)) throw new StanzaError('bad-request', 'RSM max is not a non-negative integer');
          q.max = Math.min(Number(text), limits.maxMax);
          break;
        case 'after':
          if (text !== '') q.after = text;
          break;
        case 'before':
          q.before = text;
          break;
        case 'index':
          // XEP-0059 ('Retrieving a Page Out of Order') lets a service refuse this; archive positions move as items expire.
          throw new StanzaError('feature-not-implemented', 'paging by index is not supported; use after or before');
        default:
          // first, last and count describe a page; in a request they mean nothing.
          break;
      }
    }
  }
  if (ns === NS_MAM && childNs(payload, 'flip-page', NS_MAM)) q.flip = true;
  return q;
}

/** The archive a query reads: its store and owner, and how a `with` JID filters it. */
export interface MamArchive<V extends Json = Json> {
  store: ArchiveStore<V>;
  owner: string;
  /**
   * The store's `with` value for a JID, and, when the store cannot tell such JIDs apart (a user
   * archive keeps bare JIDs, a full JID asks for one resource), a check run on each item read.
   */
  withFilter(jid: Jid): { with: string; match?: (item: ArchiveItem<V>) => boolean };
}

export interface MamPage<V extends Json = Json> {
  /** In archive order (oldest first), also for a page taken from the end. */
  items: Array<ArchiveItem<V>>;
  /** No further item in the direction of the query. */
  complete: boolean;
  /** Size of the whole result set, and the position of the first item in it (XEP-0059). */
  count?: number;
  index?: number;
}

/** Items read per store call while a `match` check filters them (the store's page cap). */
const SCAN_BATCH = 1000;

/** Runs a parsed query; unknown ids (cursors, ids field) give item-not-found. */
export async function runMamQuery<V extends Json>(archive: MamArchive<V>, q: MamQuery): Promise<MamPage<V>> {
  try {
    return await run(archive, q);
  } catch (err) {
    if (err instanceof StorageError && err.code === 'invalid') throw new StanzaError('item-not-found', 'no message with that id');
    throw err;
  }
}

async function run<V extends Json>(archive: MamArchive<V>, q: MamQuery): Promise<MamPage<V>> {
  const { store, owner } = archive;
  const base: ArchiveQuery = {};
  if (q.start !== undefined) base.start = q.start;
  if (q.end !== undefined) base.end = q.end;
  let match: ((item: ArchiveItem<V>) => boolean) | undefined;
  if (q.with) {
    const w = archive.withFilter(q.with);
    base.with = w.with;
    match = w.match;
  }
  if (q.ids) {
    const ids = [...new Set(q.ids)];
    // XEP-0313: any id that is not in the archive makes the whole query item-not-found.
    if ((await store.count(owner, { ids })) !== ids.length) throw new StanzaError('item-not-found', 'no message with one of the ids');
    base.ids = ids;
  }
  for (const id of [q.afterId, q.beforeId, q.after, q.before]) {
    if (id && !(await store.get(owner, id))) throw new StanzaError('item-not-found', `no message with id ${id}`);
  }
  if (q.afterId) base.after = q.afterId;
  if (q.beforeId) base.before = q.beforeId;

  const reverse = q.before !== undefined;
  const query: ArchiveQuery = { ...base, limit: q.max, reverse };
  if (q.after) query.after = base.after ? await later(store, owner, base.after, q.after) : q.after;
  if (q.before) query.before = base.before ? await earlier(store, owner, base.before, q.before) : q.before;

  if (match) {
    // Counting would mean reading the whole conversation; XEP-0059 allows leaving it out.
    return scan(store, owner, query, q.max, match);
  }
  const page = await store.query(owner, query);
  const out: MamPage<V> = { items: page.items, complete: page.complete, count: await store.count(owner, base) };
  // The index is given for pages taken forwards only. slixmpp (and Poezio's history on it) stops
  // paging backwards as soon as index + page size reaches the count, which a page taken from the
  // end always does; Prosody gives no index at all, so clients cope without it.
  if (page.items.length > 0 && !reverse) out.index = await store.count(owner, { ...base, before: page.items[0]!.id });
  return out;
}

/** Of two existing ids, the one later in archive order. */
async function later(store: ArchiveStore<any>, owner: string, a: string, b: string): Promise<string> {
  return (await store.count(owner, { after: a, ids: [b] })) > 0 ? b : a;
}

/** Of two existing ids, the one earlier in archive order. */
async function earlier(store: ArchiveStore<any>, owner: string, a: string, b: string): Promise<string> {
  return (await store.count(owner, { before: a, ids: [b] })) > 0 ? b : a;
}

/**
 * A page of items that pass `match`, walking the store in the query's direction batch by batch.
 * The walk is bounded by the store's own filters (for a user archive: one contact's messages).
 */
async function scan<V extends Json>(
  store: ArchiveStore<V>, owner: string, query: ArchiveQuery, max: number, match: (item: ArchiveItem<V>) => boolean,
): Promise<MamPage<V>> {
  const reverse = query.reverse === true;
  const found: Array<ArchiveItem<V>> = [];
  let cursor: Pick<ArchiveQuery, 'after' | 'before'> = { after: query.after, before: query.before };
  const done = (complete: boolean): MamPage<V> => ({ items: reverse ? found.reverse() : found, complete });
  for (;;) {
    const page = await store.query(owner, { ...query, ...cursor, limit: SCAN_BATCH });
    // Walking order: oldest first forwards, newest first backwards.
    const walked = reverse ? [...page.items].reverse() : page.items;
    for (const item of walked) {
      if (!match(item)) continue;
      // One matching item beyond the page: the page is not the last one.
      if (found.length === max) return done(false);
      found.push(item);
    }
    if (page.complete || walked.length === 0) return done(true);
    const edge = walked[walked.length - 1]!.id;
    cursor = reverse ? { after: query.after, before: edge } : { after: edge, before: query.before };
  }
}

/** The order results are sent in: archive order, or newest first for <flip-page/>. */
export function sendingOrder<T>(q: MamQuery, items: readonly T[]): T[] {
  return q.flip ? [...items].reverse() : [...items];
}

/**
 * One result: `<message><result queryid id><forwarded><delay stamp/><message/></forwarded></result></message>`.
 * `message` is the archived stanza (it is changed: it takes the jabber:client namespace, as it no
 * longer inherits the stream's).
 */
export function resultMessage(q: MamQuery, item: { id: string; ts: number }, message: Element, addr: { from?: string; to: string }): Element {
  message.attrs.xmlns = NS_CLIENT;
  const resultAttrs: Record<string, string> = { xmlns: q.ns };
  if (q.queryid !== undefined) resultAttrs.queryid = q.queryid;
  resultAttrs.id = item.id;
  const attrs: Record<string, string> = { to: addr.to, id: newId() };
  if (addr.from !== undefined) attrs.from = addr.from;
  return xml('message', attrs,
    xml('result', resultAttrs, xml('forwarded', { xmlns: NS_FORWARD }, xml('delay', { xmlns: NS_DELAY, stamp: stamp(item.ts) }), message)),
    // As ejabberd does: a result is a copy of stored history, never itself to be stored (offline
    // storage of a dying session's unacknowledged stanzas, another archive).
    xml('no-store', { xmlns: NS_HINTS }));
}

/** `<fin/>` with the RSM answer: first (with its index), last, count; complete on the last page. */
export function finElement(q: MamQuery, page: MamPage<any>): Element {
  const set = xml('set', { xmlns: NS_RSM });
  if (page.items.length > 0) {
    set.append(xml('first', page.index !== undefined ? { index: String(page.index) } : {}, page.items[0]!.id));
    set.append(xml('last', {}, page.items[page.items.length - 1]!.id));
  }
  if (page.count !== undefined) set.append(xml('count', {}, String(page.count)));
  const attrs: Record<string, string> = { xmlns: q.ns };
  if (q.queryid !== undefined) attrs.queryid = q.queryid;
  if (page.complete) attrs.complete = 'true';
  return xml('fin', attrs, set);
}

/** mam:0 ends a query with its <fin/> in a message after the results, not in the IQ result. */
export function finMessage(q: MamQuery, page: MamPage<any>, addr: { from?: string; to: string }): Element {
  const attrs: Record<string, string> = { to: addr.to, id: newId() };
  if (addr.from !== undefined) attrs.from = addr.from;
  return xml('message', attrs, finElement(q, page), xml('no-store', { xmlns: NS_HINTS }));
}

/** The answer to an IQ get <query/>: the form with every field this archive takes (XEP-0313 'Retrieving form fields'). */
export function queryForm(ns: string): Element {
  const field = (name: string, type: string, ...children: Element[]): Element => xml('field', { var: name, type }, ...children);
  const form = xml('x', { xmlns: NS_DATA, type: 'form' },
    field('FORM_TYPE', 'hidden', xml('value', {}, ns)),
    field('with', 'jid-single'),
    field('start', 'text-single'),
    field('end', 'text-single'));
  if (ns === NS_MAM) {
    form.append(field('before-id', 'text-single'));
    form.append(field('after-id', 'text-single'));
    // XEP-0313: list-multi without options, marked open so that any value is valid.
    form.append(field('ids', 'list-multi', xml('validate', { xmlns: NS_XDATA_VALIDATE, datatype: 'xs:string' }, xml('open'))));
  }
  return xml('query', { xmlns: ns }, form);
}

/** XEP-0313 archive metadata: the first and last items (an empty archive gives an empty element). */
export async function archiveMetadata(store: ArchiveStore<any>, owner: string): Promise<Element> {
  const el = xml('metadata', { xmlns: NS_MAM });
  const first = (await store.query(owner, { limit: 1 })).items[0];
  const last = (await store.query(owner, { limit: 1, reverse: true })).items[0];
  if (first && last) {
    el.append(xml('start', { id: first.id, timestamp: stamp(first.ts) }));
    el.append(xml('end', { id: last.id, timestamp: stamp(last.ts) }));
  }
  return el;
}
