// The MUC data model (XEP-0045 §5): affiliations are long-lived and belong to bare JIDs; roles
// live only while someone is in the room.
import type { AllowPm } from './options.js';

export type Affiliation = 'owner' | 'admin' | 'member' | 'none' | 'outcast';
export type Role = 'moderator' | 'participant' | 'visitor' | 'none';

export const AFFILIATIONS: readonly Affiliation[] = ['owner', 'admin', 'member', 'none', 'outcast'];
export const ROLES: readonly Role[] = ['moderator', 'participant', 'visitor', 'none'];

/** Ordering used by the privilege checks of §5 ("equal to or above in the hierarchy"). */
export const AFFILIATION_RANK: Readonly<Record<Affiliation, number>> = { owner: 4, admin: 3, member: 2, none: 1, outcast: 0 };
export const ROLE_RANK: Readonly<Record<Role, number>> = { moderator: 3, participant: 2, visitor: 1, none: 0 };

export interface RoomConfig {
  name: string;
  description: string;
  public: boolean;
  persistent: boolean;
  membersOnly: boolean;
  moderated: boolean;
  passwordProtected: boolean;
  password: string;
  maxUsers: number;
  whois: 'moderators' | 'anyone';
  allowInvites: boolean;
  allowPm: AllowPm;
  changeSubject: boolean;
  historyLength: number;
  archiving: boolean;
}

/** A stored affiliation other than none (none is the absence of an entry). */
export interface AffiliationEntry {
  affiliation: Exclude<Affiliation, 'none'>;
  reason?: string;
  /** The nickname this user registered with the room (§7.10): nobody else may use it. */
  nick?: string;
}

export interface Subject {
  text: string;
  /** Nick of the occupant who set it; '' when set by the room. */
  nick: string;
  ts: number;
}

/** What a persistent room keeps in storage (map `muc_rooms`, owner = service domain, key = room). */
export interface RoomRecord {
  config: RoomConfig;
  affiliations: Record<string, AffiliationEntry>;
  subject: Subject | null;
  /** Key of the room's occupant-ids (XEP-0421): stable ids need a stable secret. */
  secret: string;
  creator: string;
  created: number;
  /** SHA-1 of the room avatar, '' when none (XEP-0486 muc#roominfo_avatarhash). */
  avatar: string;
}
