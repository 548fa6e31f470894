// Bound sessions by JID: the router's view of who is connected where.
import type { ClientSession } from './types.js';

export class SessionRegistry {
  private readonly byBare = new Map<string, Map<string, ClientSession>>();
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Adds a bound session; returns the session it replaces (same full JID), if any. */
  add(session: ClientSession): ClientSession | undefined {
    const jid = session.jid!;
    let resources = this.byBare.get(jid.bare);
    if (!resources) {
      resources = new Map();
      this.byBare.set(jid.bare, resources);
    }
    const old = resources.get(jid.resource);
    resources.set(jid.resource, session);
    if (!old) this.count++;
    return old;
  }

  /** Removes the session if it is still the one registered under its JID. */
  remove(session: ClientSession): boolean {
    const jid = session.jid;
    if (!jid) return false;
    const resources = this.byBare.get(jid.bare);
    if (!resources || resources.get(jid.resource) !== session) return false;
    resources.delete(jid.resource);
    if (resources.size === 0) this.byBare.delete(jid.bare);
    this.count--;
    return true;
  }

  get(bare: string, resource: string): ClientSession | undefined {
    return this.byBare.get(bare)?.get(resource);
  }

  /** Every bound session of an account. */
  resources(bare: string): ClientSession[] {
    const r = this.byBare.get(bare);
    return r ? [...r.values()] : [];
  }

  /** Sessions that sent available presence, any priority. */
  available(bare: string): ClientSession[] {
    return this.resources(bare).filter((s) => s.available);
  }

  *all(): IterableIterator<ClientSession> {
    for (const r of this.byBare.values()) yield* r.values();
  }

  usersOnline(host?: string): string[] {
    const out: string[] = [];
    for (const bare of this.byBare.keys()) if (!host || bare.endsWith('@' + host)) out.push(bare);
    return out;
  }
}
