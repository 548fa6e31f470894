// Voice requests (XEP-0045 §7.13, §8.6). In a moderated room a visitor asks for voice with a
// muc#request form sent to the room; the room forwards it to every moderator as a form to fill
// in, and a moderator who submits it back with muc#request_allow true makes the visitor a
// participant. A visitor may ask once per voice_request_interval, so moderators are not flooded.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import { newId } from '../../lib/storage/ids.js';
import { field, formValues, parseBool } from './config-form.js';
import { NS_DATA } from './ns.js';
import { primarySession, type Occupant } from './occupants.js';
import type { Room } from './room.js';
import type { MucService } from './service.js';

export const NS_MUC_REQUEST = 'http://jabber.org/protocol/muc#request';

/** The muc#request data form of a message, if it carries one. */
export function voiceForm(stanza: Element): Element | undefined {
  return stanza.getChildren('x', NS_DATA).find((x) => formValues(x).get('FORM_TYPE')?.[0] === NS_MUC_REQUEST);
}

/** A muc#request form from an occupant: a request (from a visitor) or a moderator's answer. */
export async function handleVoiceForm(svc: MucService, room: Room, sender: Occupant | undefined, form: Element): Promise<void> {
  if (!sender) throw new StanzaError('not-acceptable', 'only occupants may request voice');
  const values = formValues(form);
  const one = (v: string): string | undefined => values.get(v)?.[0];
  if (values.has('muc#request_allow')) return answer(svc, room, sender, one('muc#request_allow'), one('muc#roomnick'));
  if (form.attrs.type !== 'submit') throw new StanzaError('bad-request', 'a voice request is a submitted form');
  const role = one('muc#role') ?? 'participant';
  if (role !== 'participant') throw new StanzaError('bad-request', 'only the participant role can be requested');
  // Someone with voice already has what the request asks for.
  if (sender.role !== 'visitor') return;
  const now = Date.now();
  if (sender.voiceRequestedAt !== undefined && now - sender.voiceRequestedAt < svc.o.voice_request_interval) {
    throw new StanzaError('resource-constraint', 'you asked for voice a short while ago', { type: 'wait' });
  }
  sender.voiceRequestedAt = now;
  const out: Element[] = [];
  for (const moderator of room.occupants.values()) {
    if (moderator.role !== 'moderator') continue;
    for (const full of moderator.sessions.keys()) out.push(requestMessage(room, sender, full));
  }
  await svc.routeAll(out);
}

/** §8.6: the form a moderator gets; the real JID is shown, moderators see it anyway (§7.2.3). */
function requestMessage(room: Room, visitor: Occupant, to: string): Element {
  const form = xml('x', { xmlns: NS_DATA, type: 'form' },
    xml('title', {}, 'Voice request'),
    xml('instructions', {}, `To approve this request for voice, select the "Grant voice to this person?" checkbox and click OK. To skip this request, click the cancel button.`),
    field('FORM_TYPE', 'hidden', '', [NS_MUC_REQUEST]),
    field('muc#role', 'list-single', 'Requested role', ['participant'], [['participant', 'Participant']]),
    field('muc#jid', 'jid-single', 'User ID', [primarySession(visitor)]),
    field('muc#roomnick', 'text-single', 'Room Nickname', [visitor.nick]),
    field('muc#request_allow', 'boolean', 'Grant voice to this person?', ['false']));
  return xml('message', { from: room.jid, to, id: newId() }, form);
}

/** A moderator's answer: when it allows, the visitor named by nick becomes a participant. */
async function answer(svc: MucService, room: Room, moderator: Occupant, allow: string | undefined, nick: string | undefined): Promise<void> {
  if (moderator.role !== 'moderator') throw new StanzaError('forbidden', 'only moderators may answer voice requests');
  if (!parseBool('muc#request_allow', allow)) return;
  if (nick === undefined) throw new StanzaError('bad-request', 'the answer names the occupant with muc#roomnick');
  const visitor = room.occupantByNick(nick);
  if (!visitor) throw new StanzaError('item-not-found', 'no occupant has that nickname');
  // Already a participant (another moderator was quicker, or voice came another way).
  if (visitor.role !== 'visitor') return;
  visitor.role = 'participant';
  await svc.broadcastPresence(room, visitor, { self: {}, others: {} });
}
