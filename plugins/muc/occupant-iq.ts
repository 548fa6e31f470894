// IQs to occupant JIDs. A ping from an occupant to its own occupant JID is answered by the room
// (XEP-0410 self-ping: result while joined, not-acceptable otherwise). Other IQs between occupants
// are forwarded to the target's real JID under the sender's occupant JID (XEP-0045's IQ
// forwarding between occupants), with a fresh id so that the answer can be matched and sent back under the
// target's occupant JID; vCard requests go to the target's bare JID, where its server answers
// them (XEP-0054 §3.3: vCards belong to accounts, not to sessions).
import { randomBytes } from 'node:crypto';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import type { StanzaEvent } from '../../lib/plugin/types.js';
import { cloneStanza, firstChild, iqResult } from '../../lib/xml/stanza.js';
import { NS_PING, NS_VCARD } from './ns.js';
import { primarySession } from './occupants.js';
import type { Room } from './room.js';
import type { MucService } from './service.js';

interface Pending {
  /** Who asked, and the id they used. */
  requester: string;
  id: string;
  /** The occupant JID the answer comes from. */
  target: string;
  timer: NodeJS.Timeout;
}

export class IqForwarder {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly svc: MucService) {}

  async request(room: Room, ev: StanzaEvent): Promise<void> {
    const { stanza, from, to } = ev;
    const payload = firstChild(stanza);
    const sender = room.sessions.get(from.full);
    if (payload?.name === 'ping' && payload.attrs.xmlns === NS_PING) {
      // XEP-0410 §3: the room answers for its own occupant JID, the client needs no round trip.
      if (sender && sender.jid === to.full) return this.svc.route(iqResult(stanza));
      if (!sender) throw new StanzaError('not-acceptable', 'you are not joined to this room under that nickname');
    }
    if (!sender) throw new StanzaError('not-acceptable', 'only occupants may send IQs to occupants');
    const target = room.occupantByNick(to.resource);
    if (!target) throw new StanzaError('item-not-found', 'no occupant has that nickname');
    const isVCard = payload?.name === 'vCard' && payload.attrs.xmlns === NS_VCARD;
    const id = randomBytes(12).toString('base64url');
    const fwd = cloneStanza(stanza);
    fwd.attrs.from = sender.jid;
    fwd.attrs.to = isVCard ? target.bare : primarySession(target);
    fwd.attrs.id = id;
    const timer = setTimeout(() => this.pending.delete(id), this.svc.o.iq_forward_timeout);
    timer.unref();
    this.pending.set(id, { requester: from.full, id: stanza.attrs.id ?? '', target: target.jid, timer });
    await this.svc.route(fwd);
  }

  /** An answer to a forwarded IQ, addressed to the asking occupant's JID. */
  async response(stanza: Element): Promise<void> {
    const p = this.pending.get(stanza.attrs.id ?? '');
    if (!p) return;
    this.pending.delete(stanza.attrs.id!);
    clearTimeout(p.timer);
    const back = cloneStanza(stanza);
    back.attrs.from = p.target;
    back.attrs.to = p.requester;
    back.attrs.id = p.id;
    await this.svc.route(back);
  }

  close(): void {
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.pending.clear();
  }
}
