// The owner protocol (XEP-0045 §10, namespace muc#owner): the configuration form, instant and
// reserved room creation, and destroying a room.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import { Jid } from '../../lib/jid.js';
import { cloneStanza } from '../../lib/xml/stanza.js';
import type { IqRequest } from '../../lib/plugin/types.js';
import { configForm, parseConfigForm } from './config-form.js';
import { childNs, NS_DATA, NS_MUC_OWNER, NS_MUC_USER } from './ns.js';
import type { Room } from './room.js';
import type { MucService } from './service.js';
import type { AffiliationEntry, RoomConfig } from './types.js';

function requireOwner(svc: MucService, room: Room, req: IqRequest): void {
  if (svc.affiliationOf(room, req.from.bare) !== 'owner') throw new StanzaError('forbidden', 'only owners may do this');
}

export function ownerGet(svc: MucService, room: Room, req: IqRequest): Element {
  requireOwner(svc, room, req);
  const lists = {
    owners: room.owners(),
    admins: [...room.affiliations].filter(([, e]) => e.affiliation === 'admin').map(([j]) => j),
  };
  return xml('query', { xmlns: NS_MUC_OWNER }, configForm(room.config, lists, svc.o));
}

export async function ownerSet(svc: MucService, room: Room, req: IqRequest): Promise<void> {
  requireOwner(svc, room, req);
  const destroy = childNs(req.payload, 'destroy', NS_MUC_OWNER);
  if (destroy) {
    let alt: string | undefined;
    if (destroy.attrs.jid !== undefined) {
      const j = Jid.tryParse(destroy.attrs.jid);
      if (!j) throw new StanzaError('jid-malformed', 'the alternate venue is not a valid JID');
      alt = j.full;
    }
    return destroyRoom(svc, room, { alt, reason: destroy.getChildText('reason') ?? undefined, password: destroy.getChildText('password') ?? undefined });
  }
  const form = childNs(req.payload, 'x', NS_DATA);
  if (!form) throw new StanzaError('bad-request', 'expected a data form or <destroy/>');
  if (form.attrs.type === 'cancel') {
    // §10.1.3: cancelling the initial configuration destroys the new room.
    if (room.locked) await destroyRoom(svc, room, {});
    return;
  }
  if (form.attrs.type !== 'submit') throw new StanzaError('bad-request', 'the form must be of type submit or cancel');
  const sub = parseConfigForm(form, room.config, svc.o);
  const before = room.config;
  const affiliations = new Map(room.affiliations);
  if (sub.owners !== undefined || sub.admins !== undefined) {
    // The lists in the form replace the room's owner and admin lists; someone dropped from them
    // becomes a plain member, so they keep access to a members-only room.
    for (const [kind, list] of [['owner', sub.owners], ['admin', sub.admins]] as const) {
      if (list === undefined) continue;
      for (const [j, e] of affiliations) if (e.affiliation === kind && !list.includes(j)) affiliations.set(j, { affiliation: 'member' });
    }
    for (const j of sub.admins ?? []) if (affiliations.get(j)?.affiliation !== 'owner') affiliations.set(j, { affiliation: 'admin' });
    for (const j of sub.owners ?? []) affiliations.set(j, { affiliation: 'owner' });
    if (![...affiliations.values()].some((e: AffiliationEntry) => e.affiliation === 'owner')) {
      throw new StanzaError('conflict', 'a room needs an owner');
    }
  }
  const wasLocked = room.locked;
  const prev = { config: room.config, affiliations: room.affiliations, locked: room.locked };
  room.config = sub.config;
  room.affiliations = affiliations;
  room.locked = false;
  try {
    await svc.save(room);
  } catch (err) {
    Object.assign(room, prev);
    throw err;
  }
  if (!sub.config.historyLength) room.history = [];
  else if (room.history.length > sub.config.historyLength) room.history = room.history.slice(-sub.config.historyLength);
  if (!wasLocked) await announceChanges(svc, room, before, sub.config);
  await applyAccessChanges(svc, room, before);
  await svc.dropIfUnused(room);
}

/** §10.2.1: occupants learn about a changed configuration, privacy-related changes by code. */
async function announceChanges(svc: MucService, room: Room, a: RoomConfig, b: RoomConfig): Promise<void> {
  const codes = [104];
  if (a.archiving !== b.archiving) codes.push(b.archiving ? 170 : 171);
  if (a.whois !== b.whois) codes.push(b.whois === 'anyone' ? 172 : 173);
  await svc.statusMessage(room, codes);
}

/**
 * Occupants who may no longer be there leave with 322 (the room became members-only); roles
 * follow affiliations that the form changed and the moderation setting.
 */
async function applyAccessChanges(svc: MucService, room: Room, before: RoomConfig): Promise<void> {
  for (const o of [...room.occupants.values()]) {
    const affiliation = svc.affiliationOf(room, o.bare);
    if (room.config.membersOnly && affiliation === 'none') {
      await svc.expel(room, o, { codes: [322] });
      continue;
    }
    let role = o.role;
    if (affiliation === 'owner' || affiliation === 'admin') role = 'moderator';
    else if (o.role === 'moderator') role = room.defaultRole(affiliation);
    else if (before.moderated !== room.config.moderated) role = room.defaultRole(affiliation);
    if (role !== o.role) {
      o.role = role;
      await svc.broadcastPresence(room, o, { self: { codes: [] }, others: {} });
    }
  }
}

/** §10.9: everyone leaves with the reason and the alternate venue; the room and its data go. */
export async function destroyRoom(svc: MucService, room: Room, d: { alt?: string | undefined; reason?: string | undefined; password?: string | undefined }): Promise<void> {
  const destroy = xml('destroy', d.alt !== undefined ? { jid: d.alt } : {});
  if (d.reason !== undefined) destroy.append(xml('reason', {}, d.reason));
  if (d.password !== undefined) destroy.append(xml('password', {}, d.password));
  await svc.forget(room, true);
  const out: Element[] = [];
  for (const o of [...room.occupants.values()]) {
    for (const full of svc.removeOccupant(room, o)) {
      out.push(xml('presence', { type: 'unavailable', from: o.jid, to: full },
        xml('x', { xmlns: NS_MUC_USER }, xml('item', { affiliation: 'none', role: 'none' }), cloneStanza(destroy))));
    }
  }
  await svc.routeAll(out);
}
