// Presence to occupant JIDs: entering (§7.2), presence updates (§7.7), nick changes (§7.6) and
// leaving (§7.14), including several sessions of one account under one nick.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import type { StanzaEvent } from '../../lib/plugin/types.js';
import { cloneStanza } from '../../lib/xml/stanza.js';
import { sendHistory } from './history.js';
import { nickKey, NickError, prepareNick } from './nick.js';
import { childNs, NS_MUC, NS_STANZAS, isElement } from './ns.js';
import { occupantPresence, unavailableFrom, type Occupant } from './occupants.js';
import type { Room } from './room.js';
import type { MucService } from './service.js';
import { AFFILIATION_RANK } from './types.js';

export function nickOf(svc: MucService, raw: string): { nick: string; modified: boolean } {
  try {
    const nick = prepareNick(raw, svc.o.max_nick_length);
    return { nick, modified: nick !== raw };
  } catch (err) {
    if (err instanceof NickError) throw new StanzaError('jid-malformed', err.message);
    throw err;
  }
}

/** §7.2.9: a nickname another user registered with the room is theirs (conflict). */
function checkNotReserved(room: Room, nick: string, bare: string): void {
  const registrant = room.registrantOf(nick);
  if (registrant !== undefined && registrant !== bare) throw new StanzaError('conflict', 'that nickname is registered by another user');
}

/** The stored presence of a session: what the client sent, minus addressing. */
function sessionPresence(stanza: Element): Element {
  const p = cloneStanza(stanza);
  delete p.attrs.to;
  delete p.attrs.from;
  delete p.attrs.id;
  return p;
}

/** Entry point for presence to room@service/nick from a real JID. */
export async function handlePresence(svc: MucService, room: Room, ev: StanzaEvent): Promise<void> {
  const { stanza, from } = ev;
  const type = stanza.attrs.type;
  const occupant = room.sessions.get(from.full);
  if (type === 'error') {
    // A delivery error from an occupant's server: the session is gone (a "ghost");
    // its presence is removed with 333 so the others know it did not leave on purpose.
    if (occupant && isDeliveryError(stanza)) await leave(svc, room, occupant, from.full, undefined, [333]);
    return;
  }
  if (type === 'unavailable') {
    if (occupant) await leave(svc, room, occupant, from.full, stanza, []);
    return;
  }
  if (type !== undefined) return; // subscriptions and probes mean nothing to a room
  if (room.pending) return create(svc, room, ev);
  if (!occupant) return join(svc, room, ev, false);
  const { nick } = nickOf(svc, ev.to.resource);
  if (nick === occupant.nick) return update(svc, room, occupant, from.full, stanza);
  return changeNick(svc, room, occupant, ev);
}

export function isDeliveryError(stanza: Element): boolean {
  const err = stanza.getChild('error');
  if (!err) return false;
  const conditions = ['service-unavailable', 'recipient-unavailable', 'item-not-found', 'remote-server-not-found',
    'remote-server-timeout', 'gone', 'jid-malformed'];
  return err.children.filter(isElement).some((c) => (c.attrs.xmlns ?? '') === NS_STANZAS && conditions.includes(c.name));
}

/** §10.1: the first join creates the room; with the MUC element it stays locked until configured. */
async function create(svc: MucService, room: Room, ev: StanzaEvent): Promise<void> {
  const bare = ev.from.bare;
  const admin = svc.admins.has(bare);
  const allowed = svc.o.create === 'all' || admin
    || (svc.o.create === 'local' && ev.from.domain === svc.ctx.host && ev.from.local !== '');
  const drop = (): void => {
    if (svc.rooms.get(room.local) === room && room.pending) svc.rooms.delete(room.local);
  };
  if (!allowed) {
    drop();
    throw new StanzaError('not-allowed', 'you may not create rooms on this service');
  }
  if (!admin && svc.o.max_rooms_per_user > 0 && svc.roomsCreatedBy(bare) >= svc.o.max_rooms_per_user) {
    drop();
    throw new StanzaError('policy-violation', `you already created ${svc.o.max_rooms_per_user} rooms`);
  }
  try {
    nickOf(svc, ev.to.resource);
  } catch (err) {
    drop();
    throw err;
  }
  room.creator = bare;
  room.affiliations.set(bare, { affiliation: 'owner' });
  // Without the MUC element the client speaks the old groupchat protocol and cannot configure
  // the room: it gets an instant room at once (XEP-0045's groupchat 1.0 compatibility).
  room.locked = childNs(ev.stanza, 'x', NS_MUC) !== undefined;
  room.pending = false;
  try {
    await join(svc, room, ev, true);
  } catch (err) {
    // A room whose creating join failed must not stay behind without occupants.
    if (room.empty) await svc.forget(room, true);
    throw err;
  }
}

async function join(svc: MucService, room: Room, ev: StanzaEvent, created: boolean): Promise<void> {
  const { stanza, from } = ev;
  const bare = from.bare;
  const { nick, modified } = nickOf(svc, ev.to.resource);
  const affiliation = svc.affiliationOf(room, bare);
  const rank = AFFILIATION_RANK[affiliation];
  // A locked room does not exist yet for anyone but its owner (item-not-found).
  if (room.locked && affiliation !== 'owner') throw new StanzaError('item-not-found', 'the room is being configured');
  if (affiliation === 'outcast') throw new StanzaError('forbidden', 'you are banned from this room');
  if (room.config.membersOnly && rank < AFFILIATION_RANK.member) {
    throw new StanzaError('registration-required', 'this room is for members only');
  }
  const existing = room.occupantByNick(nick);
  if (existing && existing.bare !== bare) throw new StanzaError('conflict', 'that nickname is in use');
  checkNotReserved(room, nick, bare);
  if (room.config.passwordProtected && rank < AFFILIATION_RANK.admin) {
    const given = childNs(stanza, 'x', NS_MUC)?.getChildText('password');
    if (given !== room.config.password) throw new StanzaError('not-authorized', 'a password is required');
  }
  if (!existing && room.occupants.size >= room.config.maxUsers && rank < AFFILIATION_RANK.admin) {
    throw new StanzaError('service-unavailable', 'the room is full', { type: 'wait' });
  }
  if (!room.historyLoaded) await loadHistory(svc, room);

  const full = from.full;
  const selfCodes: number[] = [];
  if (room.config.whois === 'anyone') selfCodes.push(100);
  if (room.config.archiving) selfCodes.push(170);
  if (created) selfCodes.push(201);
  if (modified) selfCodes.push(210);

  if (existing) {
    // Another session of the same account joins under the same nick: it gets the room's state
    // as a new occupant would; the others see no change, since the occupant was already there.
    existing.sessions.set(full, sessionPresence(stanza));
    svc.indexSession(room, full, existing);
    await sendOccupantsTo(svc, room, full, existing, svc.seesJids(room, existing));
    await svc.route(occupantPresence(existing, full, {
      affiliation, withJid: true, codes: [...selfCodes, 110],
    }, undefined));
    await sendHistory(svc, room, full, stanza);
    await sendSubject(svc, room, full);
    return;
  }

  const occupant: Occupant = {
    nick,
    key: nickKey(nick),
    jid: `${room.jid}/${nick}`,
    bare,
    sessions: new Map([[full, sessionPresence(stanza)]]),
    role: room.defaultRole(affiliation),
    occupantId: room.occupantIdOf(bare),
    rate: { start: 0, count: 0 },
  };
  // §7.2.3 order: the others' presence to the newcomer, the newcomer's to everyone (its own
  // self-presence last), then history, then the subject.
  await sendOccupantsTo(svc, room, full, undefined, room.config.whois === 'anyone' || occupant.role === 'moderator');
  room.occupants.set(occupant.key, occupant);
  svc.indexSession(room, full, occupant);
  await svc.broadcastPresence(room, occupant, { self: { codes: selfCodes }, others: {} });
  await sendHistory(svc, room, full, stanza);
  await sendSubject(svc, room, full);
}

/** The presence of every occupant (except `self`) to one session. */
async function sendOccupantsTo(svc: MucService, room: Room, to: string, self: Occupant | undefined, seesJids: boolean): Promise<void> {
  const list: Element[] = [];
  for (const o of room.occupants.values()) {
    if (o === self) continue;
    list.push(occupantPresence(o, to, { affiliation: svc.affiliationOf(room, o.bare), withJid: seesJids, codes: [] }, undefined));
  }
  await svc.routeAll(list);
}

/** §7.2.15: the subject comes last, empty when there is none, so clients know the join is done. */
export async function sendSubject(svc: MucService, room: Room, to: string): Promise<void> {
  const s = room.subject;
  const from = s && s.nick ? `${room.jid}/${s.nick}` : room.jid;
  await svc.route(xml('message', { type: 'groupchat', from, to }, xml('subject', {}, s?.text ?? '')));
}

async function loadHistory(svc: MucService, room: Room): Promise<void> {
  room.historyLoaded = true;
  if (!room.config.archiving || room.config.historyLength === 0) return;
  // A persistent room's history survives restarts through its archive.
  const { parseArchived } = await import('./archive.js');
  const page = await svc.archive.query(room.jid, { reverse: true, limit: room.config.historyLength });
  const entries = [];
  for (const item of page.items) {
    const stanza = await parseArchived(svc, room, item);
    if (stanza) entries.push({ stanza, ts: item.ts, chars: stanza.toString().length, id: item.id });
  }
  room.history = [...entries, ...room.history].slice(-room.config.historyLength);
}

/** §7.7: a changed presence of the session the room shows is broadcast; others are only kept. */
async function update(svc: MucService, room: Room, occupant: Occupant, full: string, stanza: Element): Promise<void> {
  occupant.sessions.delete(full);
  occupant.sessions.set(full, sessionPresence(stanza));
  await svc.broadcastPresence(room, occupant, { self: { codes: [] }, others: {} });
}

/** §7.6: unavailable from the old nick with 303 and the new nick, then available from the new one. */
async function changeNick(svc: MucService, room: Room, occupant: Occupant, ev: StanzaEvent): Promise<void> {
  const { nick, modified } = nickOf(svc, ev.to.resource);
  const holder = room.occupantByNick(nick);
  if (holder && holder !== occupant) throw new StanzaError('conflict', 'that nickname is in use');
  checkNotReserved(room, nick, occupant.bare);
  const extra = modified ? [210] : [];
  const unavailable = xml('presence', { type: 'unavailable' });
  await svc.broadcastPresence(room, occupant, { self: { codes: [303, ...extra], newNick: nick }, others: { codes: [303], newNick: nick } }, unavailable);
  room.occupants.delete(occupant.key);
  occupant.nick = nick;
  occupant.key = nickKey(nick);
  occupant.jid = `${room.jid}/${nick}`;
  room.occupants.set(occupant.key, occupant);
  occupant.sessions.delete(ev.from.full);
  occupant.sessions.set(ev.from.full, sessionPresence(ev.stanza));
  await svc.broadcastPresence(room, occupant, { self: { codes: extra }, others: {} });
}

/**
 * One session leaves. The occupant leaves with its last session; while others remain, only the
 * leaving session gets its unavailable self-presence.
 */
export async function leave(svc: MucService, room: Room, occupant: Occupant, full: string, stanza: Element | undefined, codes: number[]): Promise<void> {
  const unavailable = unavailableFrom(stanza);
  occupant.sessions.delete(full);
  svc.unindexSession(room, full);
  if (occupant.sessions.size > 0) {
    const view = { affiliation: svc.affiliationOf(room, occupant.bare), withJid: true, codes: [110] };
    // The occupant is still there for everyone else; this session alone sees itself go.
    const p = occupantPresence({ ...occupant, sessions: new Map([[full, unavailable]]) }, full, view, unavailable);
    await svc.route(p);
    return;
  }
  room.occupants.delete(occupant.key);
  await svc.broadcastPresence(room, occupant, { self: { codes }, others: { codes } }, unavailable, codes.includes(333) ? [] : [full]);
  await svc.dropIfUnused(room);
}

/** A session that ended (unbind, broadcast unavailable) leaves every room it was in. */
export async function leaveAll(svc: MucService, full: string, codes: number[]): Promise<void> {
  const rooms = svc.sessionRooms.get(full);
  if (!rooms) return;
  for (const room of [...rooms]) {
    await room.run(async () => {
      const occupant = room.sessions.get(full);
      if (occupant) await leave(svc, room, occupant, full, undefined, codes);
    });
  }
}
