// The room archive: XEP-0313 MAM queries on the room JID, and XEP-0425 moderation (a moderator
// retracts a message by its stanza-id).
//
// Tombstones. A moderated message is replaced by its tombstone in every answer (MAM and history),
// and the retraction itself is archived and broadcast. The archived item is rewritten in place
// (ArchiveStore.replace), so the moderated text is gone from the database while the item keeps its
// place and the RSM cursors clients hold. The tombstone's details are also kept in a map beside the
// archive (muc_tombstones, keyed by stanza-id): it says a message was moderated already, and it
// overrides items that rooms moderated before the rewrite existed still hold.
import xml from '@xmpp/xml';
import { parse, type Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import { Jid } from '../../lib/jid.js';
import type { IqRequest } from '../../lib/plugin/types.js';
import { newId } from '../../lib/storage/ids.js';
import { StorageError, type ArchiveItem, type ArchiveQuery } from '../../lib/storage/types.js';
import { serialize } from '../../lib/xml/serialize.js';
import { remember } from './history.js';
import {
  childNs, isElement, NS_DATA, NS_DELAY, NS_FORWARD, NS_MAM, NS_MODERATE, NS_OCCUPANT_ID, NS_RETRACT, NS_RSM, NS_SID, stamp,
} from './ns.js';
import type { Room } from './room.js';
import type { ArchivedMessage, MucService, Tombstone } from './service.js';
import { AFFILIATION_RANK } from './types.js';

/** The message a moderated one turns into (XEP-0425 §5, "tombstones"). */
function tombstoneOf(original: Element, t: Tombstone): Element {
  const m = xml('message', { type: 'groupchat' });
  for (const k of ['from', 'id']) if (original.attrs[k] !== undefined) m.attrs[k] = original.attrs[k];
  const moderated = xml('moderated', { xmlns: NS_MODERATE, by: t.by }, xml('occupant-id', { xmlns: NS_OCCUPANT_ID, id: t.occupantId }));
  const retracted = xml('retracted', { xmlns: NS_RETRACT, stamp: stamp(t.stamp) }, moderated);
  if (t.reason) retracted.append(xml('reason', {}, t.reason));
  m.append(retracted);
  const oid = childNs(original, 'occupant-id', NS_OCCUPANT_ID);
  if (oid) m.append(xml('occupant-id', { xmlns: NS_OCCUPANT_ID, id: oid.attrs.id }));
  const sid = childNs(original, 'stanza-id', NS_SID);
  if (sid) m.append(xml('stanza-id', { xmlns: NS_SID, by: sid.attrs.by, id: sid.attrs.id }));
  return m;
}

/** An archived message as it is shown now (its tombstone if it was moderated). */
export async function parseArchived(svc: MucService, room: Room, item: ArchiveItem<ArchivedMessage>): Promise<Element | undefined> {
  let el: Element;
  try {
    el = parse(item.value.xml);
  } catch {
    svc.ctx.log.warn('unreadable archived message', { room: room.jid, id: item.id });
    return undefined;
  }
  const t = await svc.tombstones.get(room.jid, item.id);
  return t ? tombstoneOf(el, t) : el;
}

function mayRead(svc: MucService, room: Room, bare: string): void {
  const affiliation = svc.affiliationOf(room, bare);
  if (affiliation === 'outcast') throw new StanzaError('forbidden', 'you are banned from this room');
  if (room.config.membersOnly && AFFILIATION_RANK[affiliation] < AFFILIATION_RANK.member) {
    throw new StanzaError('forbidden', 'the archive of a members-only room is for members');
  }
}

export function mamForm(): Element {
  const f = (v: string, type: string, value?: string): Element => {
    const el = xml('field', { var: v, type });
    if (value !== undefined) el.append(xml('value', {}, value));
    return el;
  };
  return xml('query', { xmlns: NS_MAM }, xml('x', { xmlns: NS_DATA, type: 'form' },
    f('FORM_TYPE', 'hidden', NS_MAM), f('with', 'jid-single'), f('start', 'text-single'), f('end', 'text-single'),
    f('before-id', 'text-single'), f('after-id', 'text-single'), f('ids', 'text-multi')));
}

function dateField(v: string, value: string): number {
  // XEP-0082 date-time; Date.parse also takes things that are not, so check the shape first.
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(value)) {
    throw new StanzaError('bad-request', `${v} is not an XEP-0082 date-time`);
  }
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new StanzaError('bad-request', `${v} is not a valid date`);
  return ms;
}

/** Reads the query's form into archive filters. */
function filters(payload: Element): ArchiveQuery {
  const q: ArchiveQuery = {};
  const form = childNs(payload, 'x', NS_DATA);
  if (!form) return q;
  for (const field of form.children.filter(isElement)) {
    if (field.name !== 'field') continue;
    const values = field.getChildren('value').map((v) => v.getText());
    const value = values[0];
    switch (field.attrs.var) {
      case 'FORM_TYPE':
        if (value !== NS_MAM) throw new StanzaError('bad-request', 'unexpected FORM_TYPE');
        break;
      case 'start': if (value) q.start = dateField('start', value); break;
      case 'end': if (value) q.end = dateField('end', value); break;
      case 'with': {
        if (!value) break;
        const j = Jid.tryParse(value);
        if (!j) throw new StanzaError('jid-malformed', 'with is not a valid JID');
        q.with = j.full;
        break;
      }
      case 'after-id': if (value) q.after = value; break;
      case 'before-id': if (value) q.before = value; break;
      case 'ids': if (values.length) q.ids = values; break;
      default:
        // XEP-0313: a field the archive does not support is refused, not silently ignored.
        throw new StanzaError('feature-not-implemented', `unsupported field ${field.attrs.var ?? ''}`);
    }
  }
  return q;
}

export async function mamQuery(svc: MucService, room: Room, req: IqRequest): Promise<Element> {
  mayRead(svc, room, req.from.bare);
  if (!room.config.archiving) throw new StanzaError('service-unavailable', 'this room is not archived');
  const base = filters(req.payload);
  const set = childNs(req.payload, 'set', NS_RSM);
  let limit = svc.o.mam_max_page;
  const maxText = set?.getChildText('max');
  if (maxText !== null && maxText !== undefined) {
    if (!/^\d+$/.test(maxText)) throw new StanzaError('bad-request', 'max is not a number');
    limit = Math.min(Number(maxText), svc.o.mam_max_page);
  }
  const q: ArchiveQuery = { ...base, limit };
  const after = set?.getChildText('after');
  const before = set?.getChild('before');
  if (after !== null && after !== undefined && after !== '') q.after = after;
  if (before) {
    // <before/> empty asks for the last page; with an id, the page before that id.
    q.reverse = true;
    if (before.getText() !== '') q.before = before.getText();
  }
  let page;
  let count: number;
  try {
    page = await svc.archive.query(room.jid, q);
    count = await svc.archive.count(room.jid, base);
  } catch (err) {
    if (err instanceof StorageError && err.code === 'invalid') throw new StanzaError('item-not-found', 'no message with that id');
    throw err;
  }
  const queryid = req.payload.attrs.queryid;
  const to = req.from.full;
  const out: Element[] = [];
  for (const item of page.items) {
    const m = await parseArchived(svc, room, item);
    if (!m) continue;
    delete m.attrs.to;
    m.attrs.xmlns = 'jabber:client';
    const result = xml('result', queryid !== undefined ? { xmlns: NS_MAM, queryid, id: item.id } : { xmlns: NS_MAM, id: item.id },
      xml('forwarded', { xmlns: NS_FORWARD }, xml('delay', { xmlns: NS_DELAY, stamp: stamp(item.ts) }), m));
    out.push(xml('message', { from: room.jid, to, id: newId() }, result));
  }
  // Every result before the answer that ends the query (XEP-0313 §4.2).
  await svc.routeAll(out);
  const rsm = xml('set', { xmlns: NS_RSM });
  if (page.items.length > 0) {
    rsm.append(xml('first', {}, page.items[0]!.id));
    rsm.append(xml('last', {}, page.items[page.items.length - 1]!.id));
  }
  rsm.append(xml('count', {}, String(count)));
  const fin = xml('fin', { xmlns: NS_MAM }, rsm);
  if (page.complete) fin.attrs.complete = 'true';
  return fin;
}

/** XEP-0425: a moderator retracts a message of the room by its stanza-id. */
export async function moderate(svc: MucService, room: Room, req: IqRequest): Promise<void> {
  const moderator = room.sessions.get(req.from.full);
  if (moderator?.role !== 'moderator') throw new StanzaError('forbidden', 'only moderators may moderate messages');
  const id = req.payload.attrs.id;
  if (!id || !childNs(req.payload, 'retract', NS_RETRACT)) {
    throw new StanzaError('bad-request', 'moderate needs the stanza-id and a <retract/>');
  }
  const reason = req.payload.getChildText('reason') ?? '';
  const archived = room.config.archiving ? await svc.archive.get(room.jid, id).catch(() => undefined) : undefined;
  const inHistory = room.history.find((e) => e.id === id);
  if (!archived && !inHistory) throw new StanzaError('item-not-found', 'no message with that id');
  if (await svc.tombstones.get(room.jid, id)) return; // already retracted: nothing more to say
  const t: Tombstone = { stamp: Date.now(), by: moderator.jid, occupantId: moderator.occupantId, reason };
  await svc.tombstones.set(room.jid, id, t);
  if (inHistory) inHistory.stanza = tombstoneOf(inHistory.stanza, t);
  if (archived) {
    // The text leaves the database too, not only the answers.
    const shown = (await parseArchived(svc, room, archived)) ?? tombstoneOf(xml('message', {}), t);
    await svc.archive.replace(room.jid, id, { ...archived.value, xml: serialize(shown) });
  }

  const now = Date.now();
  const retractId = newId(now);
  const retract = xml('retract', { xmlns: NS_RETRACT, id },
    xml('moderated', { xmlns: NS_MODERATE, by: moderator.jid }, xml('occupant-id', { xmlns: NS_OCCUPANT_ID, id: moderator.occupantId })));
  if (reason) retract.append(xml('reason', {}, reason));
  const msg = xml('message', { type: 'groupchat', from: room.jid, id: retractId }, retract,
    xml('stanza-id', { xmlns: NS_SID, by: room.jid, id: retractId }));
  if (room.config.archiving) await svc.archive.append(room.jid, { id: retractId, ts: now, value: { xml: serialize(msg) } });
  remember(room, msg, now, retractId);
  await svc.broadcastMessage(room, msg);
}
