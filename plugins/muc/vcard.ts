// The room's vCard (XEP-0054 on the room JID, avatars as XEP-0486 describes): anyone may read it,
// owners may set it. The avatar hash is shown in the room's disco#info and a change is announced
// to occupants as a configuration change (status 104).
import xml from '@xmpp/xml';
import { createHash } from 'node:crypto';
import { parse, type Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import type { IqRequest } from '../../lib/plugin/types.js';
import { serialize } from '../../lib/xml/serialize.js';
import { isElement, NS_VCARD } from './ns.js';
import type { Room } from './room.js';
import type { MucService } from './service.js';

export async function vcardGet(svc: MucService, room: Room): Promise<Element> {
  const stored = await svc.vcards.get(room.jid);
  return stored ? parse(stored.xml) : xml('vCard', { xmlns: NS_VCARD });
}

function photoHash(vcard: Element): string {
  const photo = vcard.children.filter(isElement).find((c) => c.name === 'PHOTO');
  const binval = photo?.children.filter(isElement).find((c) => c.name === 'BINVAL')?.getText().replace(/\s+/g, '');
  if (!binval) return '';
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(binval)) throw new StanzaError('bad-request', 'the photo is not base64');
  return createHash('sha1').update(Buffer.from(binval, 'base64')).digest('hex');
}

export async function vcardSet(svc: MucService, room: Room, req: IqRequest): Promise<void> {
  if (svc.affiliationOf(room, req.from.bare) !== 'owner') throw new StanzaError('forbidden', 'only owners may change the room vCard');
  const text = serialize(req.payload);
  if (Buffer.byteLength(text) > svc.o.max_vcard_size) {
    throw new StanzaError('not-acceptable', `the vCard is larger than ${svc.o.max_vcard_size} bytes`);
  }
  const hash = photoHash(req.payload);
  const empty = req.payload.children.filter(isElement).length === 0;
  if (empty) await svc.vcards.delete(room.jid);
  else await svc.vcards.set(room.jid, { xml: text });
  const changed = hash !== room.avatar;
  room.avatar = hash;
  await svc.save(room);
  if (changed) await svc.statusMessage(room, [104]);
}
