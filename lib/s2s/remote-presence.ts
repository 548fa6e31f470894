// Presence of remote contacts, as far as server streams are concerned: which remote full JIDs
// told which local users they are available. When the streams from a domain die, those users
// would otherwise see the contacts online forever; they get `unavailable` on the contacts'
// behalf, and the pairs are remembered so that probes bring the real presence back as soon as
// a stream with that domain is up again.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import type { Jid } from '../jid.js';

/** Most (remote resource, local user) pairs tracked; beyond it new ones are not tracked. */
const MAX_TRACKED = 100_000;

export class RemotePresence {
  /** remote domain -> remote full JID -> local bare JIDs that saw it available. */
  private readonly available = new Map<string, Map<string, Set<string>>>();
  /** remote domain -> local bare JID -> remote bare JIDs to probe once the domain is back. */
  private readonly lost = new Map<string, Map<string, Set<string>>>();
  private tracked = 0;
  private lostPairs = 0;

  /** Notes a presence a remote entity sent to a local one. */
  observe(stanza: Element, from: Jid, to: Jid): void {
    if (stanza.name !== 'presence') return;
    const type = stanza.attrs.type;
    if (type === undefined) this.add(from, to.bare);
    else if (type === 'unavailable' || type === 'error') this.remove(from, to.bare);
  }

  private add(from: Jid, localBare: string): void {
    let byResource = this.available.get(from.domain);
    if (!byResource) this.available.set(from.domain, (byResource = new Map()));
    let users = byResource.get(from.full);
    if (!users) {
      if (this.tracked >= MAX_TRACKED) return;
      byResource.set(from.full, (users = new Set()));
    }
    if (!users.has(localBare) && this.tracked < MAX_TRACKED) {
      users.add(localBare);
      this.tracked++;
    }
  }

  private remove(from: Jid, localBare: string): void {
    const byResource = this.available.get(from.domain);
    const users = byResource?.get(from.full);
    if (!byResource || !users?.delete(localBare)) return;
    this.tracked--;
    if (users.size === 0) byResource.delete(from.full);
    if (byResource.size === 0) this.available.delete(from.domain);
  }

  /** The domain's streams died: the unavailable presences to deliver locally. */
  lose(domain: string): Element[] {
    const byResource = this.available.get(domain);
    if (!byResource) return [];
    this.available.delete(domain);
    const out: Element[] = [];
    let probes = this.lost.get(domain);
    if (!probes) this.lost.set(domain, (probes = new Map()));
    for (const [remoteFull, users] of byResource) {
      const remoteBare = remoteFull.split('/')[0]!;
      for (const user of users) {
        this.tracked--;
        out.push(xml('presence', { from: remoteFull, to: user, type: 'unavailable' }));
        // Domains that never come back must not make this grow without bound.
        if (this.lostPairs >= MAX_TRACKED) continue;
        let wanted = probes.get(user);
        if (!wanted) probes.set(user, (wanted = new Set()));
        if (!wanted.has(remoteBare)) this.lostPairs++;
        wanted.add(remoteBare);
      }
    }
    return out;
  }

  /** A stream with the domain is up again: probes to ask for the presence lost with the last one. */
  regain(domain: string): Element[] {
    const probes = this.lost.get(domain);
    if (!probes) return [];
    this.lost.delete(domain);
    const out: Element[] = [];
    for (const [user, contacts] of probes) {
      this.lostPairs -= contacts.size;
      for (const contact of contacts) out.push(xml('presence', { from: user, to: contact, type: 'probe' }));
    }
    return out;
  }

  get size(): number {
    return this.tracked;
  }
}
