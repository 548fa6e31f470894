// The blocking service (XEP-0191) other plugins use: ctx.use<BlockingApi>('blocking') on the
// blocked user's host. Also the JID matching rule, shared by the plugin and its tests.
import type { Jid } from '../../lib/jid.js';

export const NS_BLOCKING = 'urn:xmpp:blocking';
export const NS_BLOCKING_ERRORS = 'urn:xmpp:blocking:errors';

export interface BlockingApi {
  /** Whether `owner` (a local user's bare JID) has blocked `jid`, by the XEP-0191 §6 matching rules. */
  isBlocked(owner: string, jid: Jid): Promise<boolean>;
  /**
   * The blocklist in memory, for hot paths that cannot wait: kept for users with a bound session,
   * undefined for others. Match with blockedBy().
   */
  loadedList(owner: string): ReadonlySet<string> | undefined;
  /** The blocked JIDs of `owner`, in canonical form and sorted. */
  list(owner: string): Promise<string[]>;
}

/**
 * XEP-0191 §6 (in the order of XEP-0016): an entry `user@domain/resource` blocks that resource
 * only, `user@domain` every resource of the account, `domain/resource` that resource of the
 * domain, and `domain` the domain itself and every address on it. Entries are canonical JIDs.
 */
export function blockedBy(entries: ReadonlySet<string>, jid: Jid): boolean {
  if (entries.size === 0) return false;
  if (entries.has(jid.full)) return true;
  if (jid.local !== '') {
    if (jid.resource !== '' && entries.has(jid.bare)) return true;
    if (jid.resource !== '' && entries.has(`${jid.domain}/${jid.resource}`)) return true;
  }
  return jid.full !== jid.domain && entries.has(jid.domain);
}
