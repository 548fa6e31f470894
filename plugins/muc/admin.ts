// The admin protocol (XEP-0045 §8 moderator and §9 admin use cases, namespace muc#admin): roles
// by nick (kick, voice, moderator), affiliations by bare JID (ban, member, admin, owner) and the
// lists. A request with several items is checked whole before any item is applied, so it either
// changes everything it asks for or nothing.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import { Jid } from '../../lib/jid.js';
import type { IqRequest } from '../../lib/plugin/types.js';
import { isElement, NS_MUC_ADMIN } from './ns.js';
import type { Occupant } from './occupants.js';
import type { Room } from './room.js';
import type { MucService } from './service.js';
import {
  AFFILIATION_RANK, AFFILIATIONS, ROLES, type Affiliation, type AffiliationEntry, type Role,
} from './types.js';

interface RoleChange { kind: 'role'; target: Occupant; role: Role; reason: string | undefined }
interface AffiliationChange { kind: 'affiliation'; jid: string; affiliation: Affiliation; reason: string | undefined }
type Change = RoleChange | AffiliationChange;

function items(payload: Element): Element[] {
  return payload.children.filter(isElement).filter((c) => c.name === 'item');
}

export async function adminSet(svc: MucService, room: Room, req: IqRequest): Promise<void> {
  const actorBare = req.from.bare;
  const actorAffiliation = svc.affiliationOf(room, actorBare);
  const actor = room.sessions.get(req.from.full);
  const list = items(req.payload);
  if (list.length === 0) throw new StanzaError('bad-request', 'no item to change');
  const changes = list.map((item) => check(svc, room, item, actorAffiliation, actor));
  // XEP-0045 (owner use cases): the last owner may not give up ownership: conflict.
  const affiliations = new Map(room.affiliations);
  for (const c of changes) if (c.kind === 'affiliation') setEntry(affiliations, c);
  if (![...affiliations.values()].some((e) => e.affiliation === 'owner') && room.owners().length > 0) {
    throw new StanzaError('conflict', 'the room would have no owner');
  }
  await saveAffiliations(svc, room, affiliations);
  for (const c of changes) await apply(svc, room, c, actor?.nick);
}

/** Makes `next` the room's affiliations once it is saved; a failed save leaves them as they were. */
export async function saveAffiliations(svc: MucService, room: Room, next: Map<string, AffiliationEntry>): Promise<void> {
  const previous = room.affiliations;
  room.affiliations = next;
  try {
    await svc.save(room);
  } catch (err) {
    room.affiliations = previous;
    throw err;
  }
}

/** What a changed affiliation does to the user's occupants (an affiliation already saved). */
export function affiliationChanged(svc: MucService, room: Room, jid: string, affiliation: Affiliation): Promise<void> {
  return apply(svc, room, { kind: 'affiliation', jid, affiliation, reason: undefined }, undefined);
}

function setEntry(map: Map<string, AffiliationEntry>, c: AffiliationChange): void {
  if (c.affiliation === 'none') {
    map.delete(c.jid);
    return;
  }
  const entry: AffiliationEntry = { affiliation: c.affiliation };
  if (c.reason !== undefined) entry.reason = c.reason;
  // A registered nickname stays with the user while the user keeps an affiliation; a ban ends it.
  const nick = map.get(c.jid)?.nick;
  if (nick !== undefined && c.affiliation !== 'outcast') entry.nick = nick;
  map.set(c.jid, entry);
}

function check(svc: MucService, room: Room, item: Element, actorAffiliation: Affiliation, actor: Occupant | undefined): Change {
  const reason = item.getChildText('reason') ?? undefined;
  const { role, affiliation, nick, jid } = item.attrs as Record<string, string | undefined>;
  if (role !== undefined && affiliation !== undefined) {
    throw new StanzaError('bad-request', 'an item changes a role or an affiliation, not both');
  }
  const actorRank = AFFILIATION_RANK[actorAffiliation];
  if (role !== undefined) {
    if (!(ROLES as readonly string[]).includes(role)) throw new StanzaError('bad-request', `unknown role ${role}`);
    if (actor?.role !== 'moderator') throw new StanzaError('forbidden', 'only moderators may change roles');
    if (nick === undefined) throw new StanzaError('bad-request', 'a role change names the occupant by nick');
    const target = room.occupantByNick(nick);
    if (!target) throw new StanzaError('item-not-found', 'no occupant has that nickname');
    const targetRank = AFFILIATION_RANK[svc.affiliationOf(room, target.bare)];
    const r = role as Role;
    // §8.2 / §8.5 / §9.7: admins and owners are moderators by affiliation; their role is not
    // changed by anyone (an owner demotes an admin by affiliation, not by role).
    if (targetRank >= AFFILIATION_RANK.admin) {
      throw new StanzaError('not-allowed', 'that occupant has a higher or equal affiliation');
    }
    // §9.6 / §9.7: the moderator role is given and taken by admins and owners.
    if ((r === 'moderator' || target.role === 'moderator') && actorRank < AFFILIATION_RANK.admin) {
      throw new StanzaError('not-allowed', 'only admins and owners may grant or revoke moderation');
    }
    if (r === 'none' && target === actor) throw new StanzaError('conflict', 'you cannot kick yourself');
    return { kind: 'role', target, role: r, reason };
  }
  if (affiliation !== undefined) {
    if (!(AFFILIATIONS as readonly string[]).includes(affiliation)) throw new StanzaError('bad-request', `unknown affiliation ${affiliation}`);
    if (actorRank < AFFILIATION_RANK.admin) throw new StanzaError('forbidden', 'only admins and owners may change affiliations');
    let bare: string | undefined;
    if (jid !== undefined) {
      const j = Jid.tryParse(jid);
      if (!j) throw new StanzaError('jid-malformed', 'not a valid JID');
      bare = j.bare;
    } else if (nick !== undefined) {
      bare = room.occupantByNick(nick)?.bare;
      if (!bare) throw new StanzaError('item-not-found', 'no occupant has that nickname');
    } else {
      throw new StanzaError('bad-request', 'an affiliation change names the user by jid');
    }
    const a = affiliation as Affiliation;
    const current = svc.affiliationOf(room, bare);
    // §9 / §10: admins manage members and outcasts; only owners touch admins and owners.
    if (actorAffiliation !== 'owner') {
      if (a === 'admin' || a === 'owner') throw new StanzaError('forbidden', 'only owners may grant admin or owner');
      if (AFFILIATION_RANK[current] >= AFFILIATION_RANK.admin) throw new StanzaError('not-allowed', 'that user has a higher or equal affiliation');
    }
    if (svc.admins.has(bare) && a !== 'owner') throw new StanzaError('not-allowed', 'service administrators cannot be demoted');
    return { kind: 'affiliation', jid: bare, affiliation: a, reason };
  }
  throw new StanzaError('bad-request', 'the item has neither role nor affiliation');
}

async function apply(svc: MucService, room: Room, c: Change, actorNick: string | undefined): Promise<void> {
  const actorView = actorNick !== undefined ? { actor: actorNick } : {};
  const reasonView = (reason: string | undefined) => (reason !== undefined ? { reason } : {});
  if (c.kind === 'role') {
    if (!room.occupants.has(c.target.key)) return; // an earlier item of the same request removed it
    if (c.role === 'none') {
      await svc.expel(room, c.target, { codes: [307], ...actorView, ...reasonView(c.reason) });
    } else if (c.role !== c.target.role) {
      c.target.role = c.role;
      await svc.broadcastPresence(room, c.target, { self: { ...reasonView(c.reason) }, others: { ...reasonView(c.reason) } });
    }
    await svc.dropIfUnused(room);
    return;
  }
  for (const o of room.occupantsOf(c.jid)) {
    if (c.affiliation === 'outcast') {
      await svc.expel(room, o, { codes: [301], ...actorView, ...reasonView(c.reason) });
    } else if (room.config.membersOnly && c.affiliation === 'none') {
      await svc.expel(room, o, { codes: [321], ...actorView, ...reasonView(c.reason) });
    } else {
      // §5.2: the role follows the new affiliation.
      o.role = room.defaultRole(c.affiliation);
      await svc.broadcastPresence(room, o, { self: { ...reasonView(c.reason) }, others: { ...reasonView(c.reason) } });
    }
  }
  await svc.dropIfUnused(room);
}

export function adminGet(svc: MucService, room: Room, req: IqRequest): Element {
  const list = items(req.payload);
  if (list.length !== 1) throw new StanzaError('bad-request', 'ask for one list at a time');
  const { affiliation, role } = list[0]!.attrs as Record<string, string | undefined>;
  const actorAffiliation = svc.affiliationOf(room, req.from.bare);
  const q = xml('query', { xmlns: NS_MUC_ADMIN });
  if (affiliation !== undefined) {
    if (!(AFFILIATIONS as readonly string[]).includes(affiliation) || affiliation === 'none') {
      throw new StanzaError('bad-request', `cannot list affiliation ${affiliation}`);
    }
    if (AFFILIATION_RANK[actorAffiliation] < AFFILIATION_RANK.admin) throw new StanzaError('forbidden', 'only admins and owners see the lists');
    for (const [jid, e] of room.affiliations) {
      if (e.affiliation !== affiliation) continue;
      const item = xml('item', { affiliation, jid });
      const nick = e.nick ?? room.occupantsOf(jid)[0]?.nick;
      if (nick !== undefined) item.attrs.nick = nick;
      if (e.reason !== undefined) item.append(xml('reason', {}, e.reason));
      q.append(item);
    }
    return q;
  }
  if (role !== undefined) {
    if (role !== 'moderator' && role !== 'participant' && role !== 'visitor') throw new StanzaError('bad-request', `cannot list role ${role}`);
    if (room.sessions.get(req.from.full)?.role !== 'moderator') throw new StanzaError('forbidden', 'only moderators see the role lists');
    for (const o of room.occupants.values()) {
      if (o.role !== role) continue;
      q.append(xml('item', { role, nick: o.nick, jid: o.bare, affiliation: svc.affiliationOf(room, o.bare) }));
    }
    return q;
  }
  throw new StanzaError('bad-request', 'the item names neither an affiliation nor a role');
}
