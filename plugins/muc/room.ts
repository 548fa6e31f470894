// One room's state. Everything that changes a room runs through its serial queue (run), so the
// stanzas of a room are handled one at a time and in order: occupants see messages and presence
// in the same order, and a config change never interleaves with a join.
import { randomBytes } from 'node:crypto';
import type { Element } from 'ltx';
import { nickKey } from './nick.js';
import { occupantIdFor, type Occupant } from './occupants.js';
import {
  AFFILIATION_RANK, type Affiliation, type AffiliationEntry, type Role, type RoomConfig, type RoomRecord, type Subject,
} from './types.js';

/** A message kept for the discussion history sent on join (§7.2.13). */
export interface HistoryEntry {
  /** The message as broadcast, without `to`. */
  stanza: Element;
  ts: number;
  /** Characters of the stanza as sent, for the maxchars limit. */
  chars: number;
  /** Its stanza-id, so that a moderated message can be replaced by its tombstone. */
  id: string;
}

export class Room {
  readonly local: string;
  readonly jid: string;
  config: RoomConfig;
  affiliations = new Map<string, AffiliationEntry>();
  subject: Subject | null = null;
  secret: string;
  creator: string;
  created: number;
  avatar = '';
  /**
   * A room that was just created with the MUC join element waits for its owner's configuration
   * (§10.1.2): nobody else may enter until it is unlocked.
   */
  locked = false;
  /** True until the creating join succeeds; such a room is invisible to everything else. */
  pending = false;
  /** The stored record exists (so a room that stops being persistent must be deleted). */
  saved = false;
  /** Occupants by nickKey. */
  readonly occupants = new Map<string, Occupant>();
  /** Occupants by the real full JID of each of their sessions. */
  readonly sessions = new Map<string, Occupant>();
  history: HistoryEntry[] = [];
  historyLoaded = false;
  private tail: Promise<unknown> = Promise.resolve();

  constructor(local: string, service: string, config: RoomConfig, creator: string) {
    this.local = local;
    this.jid = `${local}@${service}`;
    this.config = config;
    this.creator = creator;
    this.created = Date.now();
    this.secret = randomBytes(32).toString('base64');
  }

  static fromRecord(local: string, service: string, r: RoomRecord): Room {
    const room = new Room(local, service, r.config, r.creator);
    room.affiliations = new Map(Object.entries(r.affiliations));
    room.subject = r.subject;
    room.secret = r.secret;
    room.created = r.created;
    room.avatar = r.avatar ?? '';
    room.saved = true;
    return room;
  }

  toRecord(): RoomRecord {
    return {
      config: this.config,
      affiliations: Object.fromEntries(this.affiliations),
      subject: this.subject,
      secret: this.secret,
      creator: this.creator,
      created: this.created,
      avatar: this.avatar,
    };
  }

  /** Runs fn after everything queued before it; its result or error goes to the caller only. */
  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const next = this.tail.then(fn);
    this.tail = next.catch(() => undefined);
    return next;
  }

  /** The stored affiliation; service admins are owners of every room (as in ejabberd and Prosody). */
  affiliationOf(bare: string, admins: ReadonlySet<string>): Affiliation {
    if (admins.has(bare)) return 'owner';
    return this.affiliations.get(bare)?.affiliation ?? 'none';
  }

  /** §5.1: the role an affiliation starts with on entering. */
  defaultRole(affiliation: Affiliation): Role {
    if (affiliation === 'owner' || affiliation === 'admin') return 'moderator';
    if (affiliation === 'member') return 'participant';
    return this.config.moderated ? 'visitor' : 'participant';
  }

  isAtLeast(bare: string, affiliation: Affiliation, admins: ReadonlySet<string>): boolean {
    return AFFILIATION_RANK[this.affiliationOf(bare, admins)] >= AFFILIATION_RANK[affiliation];
  }

  owners(): string[] {
    return [...this.affiliations].filter(([, e]) => e.affiliation === 'owner').map(([j]) => j);
  }

  occupantByNick(nick: string): Occupant | undefined {
    return this.occupants.get(nickKey(nick));
  }

  /** The bare JID that registered this nickname (§7.10), if one did. */
  registrantOf(nick: string): string | undefined {
    const key = nickKey(nick);
    for (const [bare, e] of this.affiliations) if (e.nick !== undefined && nickKey(e.nick) === key) return bare;
    return undefined;
  }

  /** Every occupant with this real bare JID (one account may hold several nicks). */
  occupantsOf(bare: string): Occupant[] {
    return [...this.occupants.values()].filter((o) => o.bare === bare);
  }

  occupantIdOf(bare: string): string {
    return occupantIdFor(this.secret, bare);
  }

  get empty(): boolean {
    return this.occupants.size === 0;
  }
}
