// Messages: groupchat to the room (§7.4), subject changes (§8.1), private messages between
// occupants (§7.5), mediated invitations and declines (§7.8.2, §7.8.3); voice requests go to voice.ts.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import { Jid } from '../../lib/jid.js';
import type { StanzaEvent } from '../../lib/plugin/types.js';
import { newId } from '../../lib/storage/ids.js';
import { serialize } from '../../lib/xml/serialize.js';
import { cloneStanza } from '../../lib/xml/stanza.js';
import { remember } from './history.js';
import {
  childNs, childrenNs, isElement, NS_MUC_USER, NS_OCCUPANT_ID, NS_SID, removeChildren,
} from './ns.js';
import type { Occupant } from './occupants.js';
import { isDeliveryError, leave } from './presence.js';
import type { Room } from './room.js';
import type { MucService } from './service.js';
import { AFFILIATION_RANK, ROLE_RANK } from './types.js';
import { handleVoiceForm, voiceForm } from './voice.js';

/**
 * Payloads that make a bodyless message part of the conversation, so it is archived, kept for
 * history and given a stanza-id: encrypted messages, retractions, reactions, corrections are the
 * common ones (XEP-0313 §5 leaves the policy to the server; this is Prosody's and ejabberd's).
 */
const ARCHIVED_PAYLOADS = new Set([
  'eu.siacs.conversations.axolotl', 'urn:xmpp:omemo:2', 'urn:xmpp:message-retract:1', 'urn:xmpp:message-retract:0',
  'urn:xmpp:reactions:0', 'urn:xmpp:message-correct:0', 'urn:xmpp:sfs:0', 'jabber:x:oob',
]);

function archivable(stanza: Element): boolean {
  for (const c of stanza.children) {
    if (!isElement(c)) continue;
    if (c.name === 'body' && (c.attrs.xmlns === undefined || c.attrs.xmlns === 'jabber:client')) return true;
    if (c.name === 'store' && c.attrs.xmlns === 'urn:xmpp:hints') return true;
    if (c.attrs.xmlns !== undefined && ARCHIVED_PAYLOADS.has(c.attrs.xmlns)) return true;
  }
  return false;
}

/** Fixed-window limit on what one occupant sends (the message_rate option). */
function checkRate(svc: MucService, occupant: Occupant): void {
  const limit = svc.o.message_rate;
  if (limit === 0) return;
  const now = Date.now();
  if (now - occupant.rate.start >= svc.o.rate_window) occupant.rate = { start: now, count: 0 };
  if (++occupant.rate.count > limit) {
    throw new StanzaError('resource-constraint', 'you are sending messages too fast', { type: 'wait' });
  }
}

/** Strips what only the room may assert, so no client can forge ids (XEP-0359 §5, XEP-0421 §4). */
function sanitize(stanza: Element, roomJid: string): void {
  removeChildren(stanza, 'stanza-id', NS_SID, (c) => c.attrs.by !== roomJid);
  removeChildren(stanza, 'occupant-id', NS_OCCUPANT_ID);
}

/** Message to the room's bare JID. */
export async function handleRoomMessage(svc: MucService, room: Room, ev: StanzaEvent): Promise<void> {
  const { stanza, from } = ev;
  const type = stanza.attrs.type ?? 'normal';
  const occupant = room.sessions.get(from.full);
  if (type === 'error') {
    if (occupant && isDeliveryError(stanza)) await leave(svc, room, occupant, from.full, undefined, [333]);
    return;
  }
  if (type === 'groupchat') {
    if (!occupant) throw new StanzaError('not-acceptable', 'only occupants may send messages to the room');
    return groupchat(svc, room, occupant, stanza);
  }
  const x = childNs(stanza, 'x', NS_MUC_USER);
  if (x && childrenNs(x, 'invite', NS_MUC_USER).length > 0) return invite(svc, room, occupant, ev, x);
  if (x && childNs(x, 'decline', NS_MUC_USER)) return decline(svc, room, ev, childNs(x, 'decline', NS_MUC_USER)!);
  const form = voiceForm(stanza);
  if (form) return handleVoiceForm(svc, room, occupant, form);
  throw new StanzaError('feature-not-implemented', 'this room takes groupchat messages, invitations, declines and voice requests');
}

async function groupchat(svc: MucService, room: Room, occupant: Occupant, stanza: Element): Promise<void> {
  if (ROLE_RANK[occupant.role] < ROLE_RANK.participant) throw new StanzaError('forbidden', 'you have no voice in this room');
  const subject = stanza.getChild('subject');
  if (subject && !stanza.getChild('body')) return changeSubject(svc, room, occupant, stanza, subject.getText());
  checkRate(svc, occupant);
  const msg = cloneStanza(stanza);
  sanitize(msg, room.jid);
  msg.attrs.from = occupant.jid;
  delete msg.attrs.to;
  msg.append(xml('occupant-id', { xmlns: NS_OCCUPANT_ID, id: occupant.occupantId }));
  const now = Date.now();
  if (archivable(msg)) {
    const id = newId(now);
    msg.append(xml('stanza-id', { xmlns: NS_SID, by: room.jid, id }));
    // Stored before anyone sees it, so the id a client gets is always found in the archive.
    if (room.config.archiving) {
      await svc.archive.append(room.jid, { id, ts: now, with: occupant.jid, value: { xml: serialize(msg) } });
    }
    remember(room, msg, now, id);
  }
  await svc.broadcastMessage(room, msg);
}

async function changeSubject(svc: MucService, room: Room, occupant: Occupant, stanza: Element, text: string): Promise<void> {
  const allowed = occupant.role === 'moderator' || (room.config.changeSubject && occupant.role === 'participant');
  if (!allowed) throw new StanzaError('forbidden', 'you may not change the subject of this room');
  if ([...text].length > svc.o.max_subject_length) {
    throw new StanzaError('not-acceptable', `the subject is longer than ${svc.o.max_subject_length} characters`);
  }
  const previous = room.subject;
  room.subject = { text, nick: occupant.nick, ts: Date.now() };
  try {
    await svc.save(room);
  } catch (err) {
    room.subject = previous;
    throw err;
  }
  const msg = xml('message', { type: 'groupchat', from: occupant.jid }, xml('subject', {}, text),
    xml('occupant-id', { xmlns: NS_OCCUPANT_ID, id: occupant.occupantId }));
  if (stanza.attrs.id) msg.attrs.id = stanza.attrs.id;
  await svc.broadcastMessage(room, msg);
}

/** Message to room@service/nick: a private message (§7.5). */
export async function handlePrivateMessage(svc: MucService, room: Room, ev: StanzaEvent): Promise<void> {
  const { stanza, from, to } = ev;
  const type = stanza.attrs.type ?? 'normal';
  const sender = room.sessions.get(from.full);
  if (type === 'error') {
    if (sender && isDeliveryError(stanza)) await leave(svc, room, sender, from.full, undefined, [333]);
    return;
  }
  if (!sender) throw new StanzaError('not-acceptable', 'only occupants may send private messages');
  if (type === 'groupchat') throw new StanzaError('bad-request', 'private messages are not of type groupchat');
  const target = room.occupantByNick(to.resource);
  if (!target) throw new StanzaError('item-not-found', 'no occupant has that nickname');
  const pm = room.config.allowPm;
  const allowed = pm === 'anyone' || (pm === 'participants' && ROLE_RANK[sender.role] >= ROLE_RANK.participant)
    || (pm === 'moderators' && sender.role === 'moderator');
  if (!allowed) throw new StanzaError('forbidden', 'private messages are not allowed in this room');
  checkRate(svc, sender);
  const msg = cloneStanza(stanza);
  sanitize(msg, room.jid);
  msg.attrs.from = sender.jid;
  // §7.5: marks it as a MUC private message (carbons and archives treat those apart).
  if (!childNs(msg, 'x', NS_MUC_USER)) msg.append(xml('x', { xmlns: NS_MUC_USER }));
  msg.append(xml('occupant-id', { xmlns: NS_OCCUPANT_ID, id: sender.occupantId }));
  await svc.routeAll([...target.sessions.keys()].map((full) => {
    const copy = cloneStanza(msg);
    copy.attrs.to = full;
    return copy;
  }));
}

/** §7.8.2: the room relays the invitation, so the invitee learns the room's password if any. */
async function invite(svc: MucService, room: Room, occupant: Occupant | undefined, ev: StanzaEvent, x: Element): Promise<void> {
  const bare = ev.from.bare;
  const affiliation = svc.affiliationOf(room, bare);
  const rank = AFFILIATION_RANK[affiliation];
  // Admins may invite from outside the room (they manage its member list); others must be in it.
  if (!occupant && rank < AFFILIATION_RANK.admin) throw new StanzaError('not-acceptable', 'only occupants may invite');
  const moderator = occupant?.role === 'moderator' || rank >= AFFILIATION_RANK.admin;
  let allowed = room.config.allowInvites || moderator;
  // §7.8.2: in a members-only room inviting means adding a member, which is an admin's right
  // unless the owner let members invite.
  if (room.config.membersOnly) allowed = rank >= AFFILIATION_RANK.admin || (room.config.allowInvites && rank >= AFFILIATION_RANK.member);
  if (!allowed) throw new StanzaError('forbidden', 'you may not invite people to this room');
  const invites = childrenNs(x, 'invite', NS_MUC_USER).map((inv) => {
    const to = Jid.tryParse(inv.attrs.to);
    if (!to) throw new StanzaError('jid-malformed', 'the invitee address is not a valid JID');
    return { to, reason: inv.getChildText('reason') ?? undefined };
  });
  if (room.config.membersOnly) {
    let changed = false;
    for (const { to } of invites) {
      if (svc.affiliationOf(room, to.bare) === 'none') {
        room.affiliations.set(to.bare, { affiliation: 'member' });
        changed = true;
      }
    }
    if (changed) await svc.save(room);
  }
  const out = invites.map(({ to, reason }) => {
    const inv = xml('invite', { from: ev.from.full });
    if (reason !== undefined) inv.append(xml('reason', {}, reason));
    const ux = xml('x', { xmlns: NS_MUC_USER }, inv);
    if (room.config.passwordProtected) ux.append(xml('password', {}, room.config.password));
    const body = `${ev.from.bare} invites you to the room ${room.jid}${reason ? `: ${reason}` : ''}`;
    const m = xml('message', { from: room.jid, to: to.full }, ux, xml('body', {}, body));
    if (ev.stanza.attrs.id) m.attrs.id = ev.stanza.attrs.id;
    return m;
  });
  await svc.routeAll(out);
}

/** §7.8.3: a declined invitation goes back to the inviter, from the room. */
async function decline(svc: MucService, room: Room, ev: StanzaEvent, d: Element): Promise<void> {
  const to = Jid.tryParse(d.attrs.to);
  if (!to) throw new StanzaError('jid-malformed', 'the decline needs the inviter\'s address in to');
  const out = xml('decline', { from: ev.from.bare });
  const reason = d.getChildText('reason');
  if (reason !== null) out.append(xml('reason', {}, reason));
  await svc.route(xml('message', { from: room.jid, to: to.full }, xml('x', { xmlns: NS_MUC_USER }, out)));
}
