// Registering a nickname with a room (XEP-0045 §7.10) and discovering it (§7.12). A registered
// nick is kept with the user's affiliation: nobody else may enter or change to it (conflict), and
// registering makes a user without an affiliation a member, as Prosody does. `<remove/>` gives
// the nickname up and keeps the affiliation. In a members-only room only members may register,
// since registering would otherwise let anyone in.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import type { IqRequest } from '../../lib/plugin/types.js';
import { affiliationChanged, saveAffiliations } from './admin.js';
import { field, formValues } from './config-form.js';
import { NS_DATA } from './ns.js';
import { nickOf } from './presence.js';
import type { Room } from './room.js';
import type { MucService } from './service.js';
import { AFFILIATION_RANK, type AffiliationEntry } from './types.js';

export const NS_REGISTER = 'jabber:iq:register';
export const NS_MUC_REGISTER = 'http://jabber.org/protocol/muc#register';
/** §7.12: the disco#info node that tells a user the nickname registered with the room. */
export const NODE_ROOMUSER = 'x-roomuser-item';

function mayRegister(svc: MucService, room: Room, bare: string): void {
  const affiliation = svc.affiliationOf(room, bare);
  if (affiliation === 'outcast') throw new StanzaError('forbidden', 'you are banned from this room');
  if (room.config.membersOnly && AFFILIATION_RANK[affiliation] < AFFILIATION_RANK.member) {
    throw new StanzaError('not-allowed', 'only members may register a nickname in a members-only room');
  }
}

/** The registration form, or the nickname already registered. */
export function registerGet(svc: MucService, room: Room, req: IqRequest): Element {
  mayRegister(svc, room, req.from.bare);
  const nick = room.affiliations.get(req.from.bare)?.nick;
  if (nick !== undefined) return xml('query', { xmlns: NS_REGISTER }, xml('registered'), xml('username', {}, nick));
  const roomnick = field('muc#register_roomnick', 'text-single', 'Nickname', []);
  roomnick.append(xml('required'));
  return xml('query', { xmlns: NS_REGISTER },
    xml('instructions', {}, 'Choose the nickname to register with this room; nobody else can use it then.'),
    xml('x', { xmlns: NS_DATA, type: 'form' },
      xml('title', {}, `Nickname registration for ${room.config.name || room.local}`),
      field('FORM_TYPE', 'hidden', '', [NS_MUC_REGISTER]),
      roomnick));
}

/** Registers (a submitted form) or gives up (`<remove/>`) the user's nickname. */
export async function registerSet(svc: MucService, room: Room, req: IqRequest): Promise<void> {
  const bare = req.from.bare;
  mayRegister(svc, room, bare);
  const current = room.affiliations.get(bare);
  if (req.payload.getChild('remove')) {
    if (current?.nick === undefined) return;
    const { nick: _dropped, ...rest } = current;
    return store(svc, room, bare, rest);
  }
  const form = req.payload.getChild('x', NS_DATA);
  if (!form || form.attrs.type !== 'submit') throw new StanzaError('bad-request', 'registration needs the submitted form');
  const values = formValues(form);
  const formType = values.get('FORM_TYPE')?.[0];
  if (formType !== undefined && formType !== NS_MUC_REGISTER) throw new StanzaError('bad-request', 'unexpected FORM_TYPE');
  const raw = values.get('muc#register_roomnick')?.[0];
  if (!raw) throw new StanzaError('not-acceptable', 'muc#register_roomnick is required');
  const { nick } = nickOf(svc, raw);
  const registrant = room.registrantOf(nick);
  if (registrant !== undefined && registrant !== bare) throw new StanzaError('conflict', 'another user registered that nickname');
  const occupant = room.occupantByNick(nick);
  if (occupant && occupant.bare !== bare) throw new StanzaError('conflict', 'another user is in the room with that nickname');
  if (current?.nick === nick) return;
  // A service administrator is an owner of every room without an entry; the entry says so too.
  const affiliation = svc.affiliationOf(room, bare);
  const becomesMember = affiliation === 'none';
  await store(svc, room, bare, { ...(current ?? { affiliation: becomesMember ? 'member' : affiliation }), nick });
  // §5.2: the role follows the new affiliation, as when an admin grants it.
  if (becomesMember) await affiliationChanged(svc, room, bare, 'member');
}

function store(svc: MucService, room: Room, bare: string, entry: AffiliationEntry): Promise<void> {
  return saveAffiliations(svc, room, new Map(room.affiliations).set(bare, entry));
}

/** §7.12: the identity naming the user's registered nickname, or an empty answer. */
export function roomUserInfo(room: Room, bare: string): Element {
  const q = xml('query', { xmlns: 'http://jabber.org/protocol/disco#info', node: NODE_ROOMUSER });
  const nick = room.affiliations.get(bare)?.nick;
  if (nick !== undefined) q.append(xml('identity', { category: 'conference', type: 'text', name: nick }));
  return q;
}
