// The MUC service of one host: its rooms, its stores and the ways stanzas leave a room. Every
// stanza a room generates goes out through ctx.route with the room or occupant JID as `from`, so
// the recipients' plugins (blocking, carbons, CSI) see it like any other stanza.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { Jid, prepDomain } from '../../lib/jid.js';
import type { PluginContext } from '../../lib/plugin/types.js';
import type { ArchiveStore, Json, KeyValStore, MapStore } from '../../lib/storage/types.js';
import { cloneStanza } from '../../lib/xml/stanza.js';
import { NS_MUC_USER, statuses } from './ns.js';
import { occupantPresence, unavailableFrom, type Occupant, type PresenceView } from './occupants.js';
import type { MucOptions } from './options.js';
import { Room } from './room.js';
import type { Affiliation, RoomConfig, RoomRecord } from './types.js';

/** What the room archive keeps per message (owner = room JID, `with` = occupant JID). */
export interface ArchivedMessage {
  xml: string;
  [key: string]: string;
}

/** A moderated message's tombstone (XEP-0425), kept beside the archive (see archive.ts). */
export interface Tombstone {
  stamp: number;
  by: string;
  occupantId: string;
  reason: string;
  [key: string]: string | number;
}

export interface RoomVCard {
  xml: string;
  [key: string]: string;
}

export class MucService {
  readonly domain: string;
  readonly admins: ReadonlySet<string>;
  readonly rooms = new Map<string, Room>();
  /** Rooms each real full JID is in, so a session that ends leaves all of them. */
  readonly sessionRooms = new Map<string, Set<Room>>();
  readonly roomStore: MapStore<Json>;
  readonly archive: ArchiveStore<ArchivedMessage>;
  readonly tombstones: MapStore<Tombstone>;
  readonly vcards: KeyValStore<RoomVCard>;
  closing = false;

  constructor(readonly ctx: PluginContext<MucOptions>, readonly o: MucOptions) {
    // Prepared as the router prepares the domains it looks up; a bad value stops the boot.
    this.domain = prepDomain(o.domain.replace('{host}', ctx.host));
    this.admins = new Set(o.admins.map((a) => {
      const j = Jid.tryParse(a);
      if (!j || j.local === '' || j.resource !== '') throw new Error(`muc admins: ${a} is not a bare JID`);
      return j.bare;
    }));
    this.roomStore = ctx.store.map('muc_rooms');
    this.archive = ctx.store.archive('muc_archive');
    this.tombstones = ctx.store.map('muc_tombstones');
    this.vcards = ctx.store.keyval('muc_vcard');
  }

  defaultConfig(): RoomConfig {
    const d = this.o.defaults;
    return {
      name: '',
      description: '',
      public: d.public,
      persistent: d.persistent,
      membersOnly: d.members_only,
      moderated: d.moderated,
      passwordProtected: false,
      password: '',
      maxUsers: Math.min(this.o.max_users, this.o.max_users_limit),
      whois: d.whois,
      allowInvites: d.allow_invites,
      allowPm: d.allow_pm,
      changeSubject: d.change_subject,
      historyLength: Math.min(d.history_length, this.o.max_history),
      archiving: d.archiving,
    };
  }

  /** Loads the persistent rooms; their occupants come back as people rejoin. */
  async load(): Promise<void> {
    for (const [local, record] of await this.roomStore.entries(this.domain)) {
      this.rooms.set(local, Room.fromRecord(local, this.domain, record as unknown as RoomRecord));
    }
  }

  /** Writes a persistent room's record, or deletes it when the room stopped being persistent. */
  async save(room: Room): Promise<void> {
    if (room.config.persistent && !room.pending) {
      await this.roomStore.set(this.domain, room.local, room.toRecord() as unknown as Json);
      room.saved = true;
    } else if (room.saved) {
      await this.roomStore.delete(this.domain, room.local);
      room.saved = false;
    }
  }

  affiliationOf(room: Room, bare: string): Affiliation {
    return room.affiliationOf(bare, this.admins);
  }

  roomsCreatedBy(bare: string): number {
    let n = 0;
    for (const room of this.rooms.values()) if (!room.pending && room.creator === bare) n++;
    return n;
  }

  // ---------- sending ----------

  route(stanza: Element): Promise<void> {
    return this.ctx.route(stanza);
  }

  /**
   * Routes stanzas in order, yielding to the event loop every fanout_batch stanzas: a broadcast
   * to a large room must not hold up every other session's stanzas while it runs. The room's
   * queue waits for the whole broadcast, so order within the room is kept.
   */
  async routeAll(stanzas: Iterable<Element>): Promise<void> {
    let n = 0;
    for (const st of stanzas) {
      await this.ctx.route(st);
      if (++n % this.o.fanout_batch === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Each session of each occupant, with a copy of the stanza addressed to it. */
  *toEveryone(room: Room, build: (recipient: Occupant, to: string) => Element | undefined): Generator<Element> {
    for (const r of [...room.occupants.values()]) {
      for (const to of [...r.sessions.keys()]) {
        const st = build(r, to);
        if (st) yield st;
      }
    }
  }

  /** A groupchat message from the room or an occupant to every occupant. */
  broadcastMessage(room: Room, message: Element): Promise<void> {
    return this.routeAll(this.toEveryone(room, (_r, to) => {
      const copy = cloneStanza(message);
      copy.attrs.to = to;
      return copy;
    }));
  }

  /** Whether `recipient` may see occupants' real JIDs (§7.2.3 / whois). */
  seesJids(room: Room, recipient: Occupant): boolean {
    return room.config.whois === 'anyone' || recipient.role === 'moderator';
  }

  /**
   * The presence of `subject` to every occupant; `self` and `others` add what each side gets
   * (self-presence carries 110, and codes such as 201 or 210 only there).
   */
  broadcastPresence(room: Room, subject: Occupant, views: { self: Partial<PresenceView>; others: Partial<PresenceView> },
    unavailable?: Element, also?: Iterable<string>): Promise<void> {
    const affiliation = this.affiliationOf(room, subject.bare);
    const recipients = this.toEveryone(room, (r, to) => {
      const self = r === subject;
      const extra = self ? views.self : views.others;
      return occupantPresence(subject, to, {
        affiliation,
        withJid: self || this.seesJids(room, r),
        ...extra,
        codes: [...(extra.codes ?? []), ...(self ? [110] : [])],
      }, unavailable);
    });
    // Sessions that just left the room (and so are no longer occupants) still get their own
    // unavailable self-presence.
    const leaving = [...(also ?? [])].map((to) => occupantPresence(subject, to, {
      affiliation, withJid: true, ...views.self, codes: [...(views.self.codes ?? []), 110],
    }, unavailable ?? unavailableFrom(undefined)));
    return this.routeAll([...recipients, ...leaving]);
  }

  /** A message from the room itself with status codes (configuration changes, §10.2.1). */
  statusMessage(room: Room, codes: number[]): Promise<void> {
    return this.broadcastMessage(room, xml('message', { type: 'groupchat', from: room.jid },
      xml('x', { xmlns: NS_MUC_USER }, ...statuses(codes))));
  }

  // ---------- occupants' sessions ----------

  indexSession(room: Room, full: string, occupant: Occupant): void {
    room.sessions.set(full, occupant);
    let set = this.sessionRooms.get(full);
    if (!set) {
      set = new Set();
      this.sessionRooms.set(full, set);
    }
    set.add(room);
  }

  unindexSession(room: Room, full: string): void {
    room.sessions.delete(full);
    const set = this.sessionRooms.get(full);
    if (set) {
      set.delete(room);
      if (set.size === 0) this.sessionRooms.delete(full);
    }
  }

  /** Takes an occupant out of the room with every one of its sessions. */
  removeOccupant(room: Room, occupant: Occupant): string[] {
    room.occupants.delete(occupant.key);
    const sessions = [...occupant.sessions.keys()];
    for (const full of sessions) this.unindexSession(room, full);
    return sessions;
  }

  /**
   * Removes an occupant that was made to leave (kick, ban, affiliation or config change,
   * shutdown): everyone, the occupant's own sessions included, gets its unavailable presence.
   */
  async expel(room: Room, occupant: Occupant, view: Partial<PresenceView>): Promise<void> {
    const sessions = this.removeOccupant(room, occupant);
    const unavailable = xml('presence', { type: 'unavailable' });
    await this.broadcastPresence(room, occupant, { self: view, others: view }, unavailable, sessions);
  }

  /** Forgets a room that has no reason to exist any more (temporary and empty, or destroyed). */
  async forget(room: Room, purge: boolean): Promise<void> {
    if (this.rooms.get(room.local) === room) this.rooms.delete(room.local);
    if (room.saved) {
      await this.roomStore.delete(this.domain, room.local);
      room.saved = false;
    }
    if (purge) {
      await this.archive.clear(room.jid);
      await this.tombstones.clear(room.jid);
      await this.vcards.delete(room.jid);
    }
  }

  /** A temporary room disappears with its last occupant; so does a room still locked for configuration. */
  async dropIfUnused(room: Room): Promise<void> {
    if (room.empty && (!room.config.persistent || room.locked)) await this.forget(room, true);
  }
}
