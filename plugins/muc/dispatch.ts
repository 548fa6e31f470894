// The component handler: every stanza to the service domain, a room or an occupant JID arrives
// here and goes to the room's serial queue. IQ answers are routed from here; StanzaErrors thrown
// by handlers travel back to the router, which bounces the stanza with them.
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import type { IqRequest, StanzaEvent } from '../../lib/plugin/types.js';
import { NS_DISCO_INFO, NS_DISCO_ITEMS } from '../../lib/xml/ns.js';
import { firstChild, iqResult } from '../../lib/xml/stanza.js';
import { adminGet, adminSet } from './admin.js';
import { mamForm, mamQuery, moderate } from './archive.js';
import { roomInfo, roomItems, serviceInfo, serviceItems } from './disco.js';
import { handlePrivateMessage, handleRoomMessage } from './messages.js';
import { NS_MAM, NS_MODERATE, NS_MUC_ADMIN, NS_MUC_OWNER, NS_PING, NS_VCARD } from './ns.js';
import type { IqForwarder } from './occupant-iq.js';
import { ownerGet, ownerSet } from './owner.js';
import { NODE_ROOMUSER, NS_REGISTER, registerGet, registerSet, roomUserInfo } from './register.js';
import { handlePresence } from './presence.js';
import { Room } from './room.js';
import type { MucService } from './service.js';
import { vcardGet, vcardSet } from './vcard.js';

type RoomIqHandler = (svc: MucService, room: Room, req: IqRequest) => Element | void | Promise<Element | void>;

const ROOM_IQS = new Map<string, RoomIqHandler>([
  [`get ${NS_DISCO_INFO} query`, (svc, room, req) => {
    const node = req.payload.attrs.node;
    if (node === NODE_ROOMUSER) return roomUserInfo(room, req.from.bare);
    if (node) throw new StanzaError('item-not-found');
    return roomInfo(svc, room);
  }],
  [`get ${NS_REGISTER} query`, registerGet],
  [`set ${NS_REGISTER} query`, registerSet],
  [`get ${NS_DISCO_ITEMS} query`, () => roomItems()],
  [`get ${NS_MUC_OWNER} query`, ownerGet],
  [`set ${NS_MUC_OWNER} query`, ownerSet],
  [`get ${NS_MUC_ADMIN} query`, adminGet],
  [`set ${NS_MUC_ADMIN} query`, adminSet],
  [`get ${NS_MAM} query`, () => mamForm()],
  [`set ${NS_MAM} query`, mamQuery],
  [`get ${NS_VCARD} vCard`, (svc, room) => vcardGet(svc, room)],
  [`set ${NS_VCARD} vCard`, vcardSet],
  [`set ${NS_MODERATE} moderate`, moderate],
  [`get ${NS_PING} ping`, () => undefined],
]);

function iqRequest(ev: StanzaEvent): IqRequest | undefined {
  const type = ev.stanza.attrs.type;
  if (type !== 'get' && type !== 'set') return undefined;
  const payload = firstChild(ev.stanza);
  if (!payload || ev.stanza.children.filter((c) => typeof c !== 'string').length !== 1) {
    throw new StanzaError('bad-request', 'an iq get or set has exactly one child element');
  }
  return { stanza: ev.stanza, payload, type, from: ev.from, to: ev.to, session: ev.session };
}

export function createDispatcher(svc: MucService, forwarder: IqForwarder) {
  async function serviceStanza(ev: StanzaEvent): Promise<void> {
    if (ev.stanza.name !== 'iq') {
      if (ev.stanza.name === 'message' && ev.stanza.attrs.type !== 'error') {
        throw new StanzaError('service-unavailable', 'the service takes no messages');
      }
      return;
    }
    const req = iqRequest(ev);
    if (!req) return;
    const key = `${req.type} ${req.payload.attrs.xmlns ?? ''} ${req.payload.name}`;
    let answer: Element | undefined;
    if (key === `get ${NS_DISCO_INFO} query` && !req.payload.attrs.node) answer = serviceInfo(svc);
    else if (key === `get ${NS_DISCO_ITEMS} query` && !req.payload.attrs.node) answer = serviceItems(svc);
    else if (key !== `get ${NS_PING} ping`) throw new StanzaError('service-unavailable');
    await svc.route(iqResult(ev.stanza, answer));
  }

  async function roomStanza(room: Room, ev: StanzaEvent): Promise<void> {
    const { stanza, to } = ev;
    if (room.pending && !(stanza.name === 'presence' && to.resource !== '')) {
      throw new StanzaError('item-not-found', 'no such room');
    }
    if (to.resource !== '') {
      if (stanza.name === 'presence') return handlePresence(svc, room, ev);
      if (stanza.name === 'message') return handlePrivateMessage(svc, room, ev);
      const type = stanza.attrs.type;
      if (type === 'result' || type === 'error') return forwarder.response(stanza);
      return forwarder.request(room, ev);
    }
    if (stanza.name === 'message') return handleRoomMessage(svc, room, ev);
    if (stanza.name === 'presence') {
      // §7.2.1: entering needs a nickname.
      if (stanza.attrs.type === undefined) throw new StanzaError('jid-malformed', 'join with room@service/nick');
      return;
    }
    const req = iqRequest(ev);
    if (!req) return;
    const handler = ROOM_IQS.get(`${req.type} ${req.payload.attrs.xmlns ?? ''} ${req.payload.name}`);
    if (!handler) throw new StanzaError('service-unavailable');
    // A locked room is invisible except to its owner, who configures it (§10.1).
    if (room.locked && svc.affiliationOf(room, req.from.bare) !== 'owner') throw new StanzaError('item-not-found', 'no such room');
    const answer = await handler(svc, room, req);
    await svc.route(iqResult(stanza, answer ?? undefined));
  }

  return async function handle(ev: StanzaEvent): Promise<void> {
    const { to, stanza } = ev;
    if (svc.closing) throw new StanzaError('service-unavailable', 'the service is shutting down');
    if (to.local === '') {
      if (to.resource !== '') {
        if (stanza.name === 'message' && stanza.attrs.type !== 'error') throw new StanzaError('service-unavailable');
        if (stanza.name === 'iq' && (stanza.attrs.type === 'get' || stanza.attrs.type === 'set')) throw new StanzaError('service-unavailable');
        return;
      }
      return serviceStanza(ev);
    }
    let room = svc.rooms.get(to.local);
    if (!room) {
      // Only an available presence to an occupant JID may bring a room into existence.
      const creates = stanza.name === 'presence' && stanza.attrs.type === undefined && to.resource !== '';
      if (!creates) {
        if (stanza.name === 'presence') return; // leaving a room that is gone needs no answer
        if (stanza.attrs.type === 'error' || stanza.attrs.type === 'result') return;
        throw new StanzaError('item-not-found', 'no such room');
      }
      room = new Room(to.local, svc.domain, svc.defaultConfig(), ev.from.bare);
      room.pending = true;
      svc.rooms.set(to.local, room);
    }
    const r = room;
    await r.run(() => {
      // The room was destroyed (or its creation failed) while this stanza waited: start over,
      // as if it had arrived now.
      if (svc.rooms.get(r.local) !== r) return handle(ev);
      return roomStanza(r, ev);
    });
  };
}
