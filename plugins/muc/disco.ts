// Service discovery for the service and its rooms (XEP-0045 §6): the service is a
// conference/text identity listing its public rooms; each room describes its configuration by
// features (muc_public, muc_membersonly, ...) and a muc#roominfo form (XEP-0128).
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from '../../lib/xml/ns.js';
import {
  NS_DATA, NS_MAM, NS_MAM_EXTENDED, NS_MODERATE, NS_MUC, NS_MUC_ROOMINFO, NS_MUC_SELF_PING, NS_MUC_STABLE_ID,
  NS_OCCUPANT_ID, NS_PING, NS_SID, NS_VCARD,
} from './ns.js';
import { NS_REGISTER } from './register.js';
import type { Room } from './room.js';
import type { MucService } from './service.js';

function features(list: string[]): Element[] {
  return [...new Set(list)].sort().map((f) => xml('feature', { var: f }));
}

export function serviceInfo(svc: MucService): Element {
  return xml('query', { xmlns: NS_DISCO_INFO },
    xml('identity', { category: 'conference', type: 'text', name: svc.o.name }),
    ...features([NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MUC, NS_OCCUPANT_ID, NS_MUC_STABLE_ID, NS_MUC_SELF_PING, NS_PING]));
}

/** Public rooms that exist for everyone (not locked, not being created). */
export function serviceItems(svc: MucService): Element {
  const q = xml('query', { xmlns: NS_DISCO_ITEMS });
  const rooms = [...svc.rooms.values()].filter((r) => r.config.public && !r.locked && !r.pending)
    .sort((a, b) => a.local.localeCompare(b.local));
  for (const r of rooms) q.append(xml('item', { jid: r.jid, name: r.config.name || r.local }));
  return q;
}

export function roomInfo(svc: MucService, room: Room): Element {
  const c = room.config;
  const list = [
    NS_DISCO_INFO, NS_DISCO_ITEMS, NS_MUC, NS_SID, NS_MUC_STABLE_ID, NS_OCCUPANT_ID, NS_MUC_SELF_PING, NS_VCARD, NS_MODERATE, NS_PING,
    NS_REGISTER,
    c.public ? 'muc_public' : 'muc_hidden',
    c.persistent ? 'muc_persistent' : 'muc_temporary',
    c.membersOnly ? 'muc_membersonly' : 'muc_open',
    c.moderated ? 'muc_moderated' : 'muc_unmoderated',
    c.whois === 'anyone' ? 'muc_nonanonymous' : 'muc_semianonymous',
    c.passwordProtected ? 'muc_passwordprotected' : 'muc_unsecured',
  ];
  if (c.archiving) list.push(NS_MAM, NS_MAM_EXTENDED);
  const field = (v: string, value: string | string[], label?: string): Element => {
    const f = xml('field', label ? { var: v, label } : { var: v });
    for (const x of Array.isArray(value) ? value : [value]) f.append(xml('value', {}, x));
    return f;
  };
  const form = xml('x', { xmlns: NS_DATA, type: 'result' },
    xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, NS_MUC_ROOMINFO)),
    field('muc#roominfo_description', c.description, 'Description'),
    field('muc#roominfo_occupants', String(room.occupants.size), 'Number of occupants'),
    field('muc#roominfo_subject', room.subject?.text ?? '', 'Subject'),
    field('muc#roominfo_subjectmod', c.changeSubject ? '1' : '0', 'Occupants may change the subject'),
    field('muc#roomconfig_roomname', c.name, 'Name'),
    field('muc#roomconfig_allowinvites', c.allowInvites ? '1' : '0'),
    field('muc#roomconfig_allowpm', c.allowPm),
    field('muc#roomconfig_maxusers', String(c.maxUsers)),
    field('muc#roominfo_avatarhash', room.avatar ? [room.avatar] : []),
  );
  return xml('query', { xmlns: NS_DISCO_INFO },
    xml('identity', { category: 'conference', type: 'text', name: c.name || room.local }),
    ...features(list), form);
}

/** Occupant lists are not given out: in a semi-anonymous room they would tell nicks to strangers. */
export function roomItems(): Element {
  return xml('query', { xmlns: NS_DISCO_ITEMS });
}
