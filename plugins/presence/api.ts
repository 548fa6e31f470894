// The presence service (RFC 6121 §3, §4) other plugins use: ctx.use<PresenceApi>('presence').
import type { Element } from 'ltx';

export const NS_PREAPPROVAL = 'urn:xmpp:features:pre-approval';

/**
 * Priority of this plugin's `presence/broadcast` handler, which sends the presence out. It runs
 * after every handler of higher priority (the default 0 included), so a plugin that amends
 * broadcast presence (e.g. vCard avatar hashes) only needs to hook `presence/broadcast`.
 */
export const BROADCAST_PRIORITY = -100;

export interface PresenceApi {
  /** Re-broadcasts the current presence of every available session of the user (emitting `presence/broadcast` again so plugins such as vCard avatars can amend it). */
  rebroadcast(bare: string): Promise<void>;
  /** The last unavailable presence of the user and when (for probes of offline users and XEP-0012). Survives restarts (store it). */
  lastUnavailable(bare: string): Promise<{ stanza: Element; at: number } | undefined>;
}
