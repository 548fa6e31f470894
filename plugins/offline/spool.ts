// The offline spool of one host: storing, ack-then-delete delivery, removal and metrics.
//
// Storage: an archive store ('offline', owner = the recipient's bare JID) holding each message as
// XML text under its stanza-id, written with a TTL (`expiry`), so old messages disappear from
// every read by themselves. A map store ('offline_index', owner = the host) keeps, per user with a
// spool, how many messages this plugin stored and has not deleted: the difference to what is
// still readable is what expired (counted when the spool is next looked at), and its keys are the
// users to list in the metrics. Its entries carry a TTL too, so a spool that expired entirely
// leaves no entry behind.
//
// Delivery (DESIGN §6, ack-then-delete): when a session becomes available with a non-negative
// priority, stored messages are written to it oldest first, at most `window` of them unsettled at
// a time. Each is leased to that session while in flight, so a second resource coming online at
// the same moment gets other messages, never the same one. A message is deleted only when its
// outcome says the client has it: the XEP-0198 ack of the session it was written to ('acked'),
// or, for a client without stream management, the write to its connection ('written', unless
// `without_sm` is 'keep'). If the session ends first ('failed', or closed with leases left), the
// lease is released and the message stays: it goes to another eligible session of the user at
// once, or waits for the next login.
//
// Every change to one user's spool and index runs under a per-user lock, so a quota check and
// its append, or a delete and the index update, cannot interleave with another.
import { parse } from 'ltx';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import type { StanzaEvent } from '../../lib/plugin/types.js';
import type { SessionRegistry } from '../../lib/session/registry.js';
import type { ClientSession, DeliveryOutcome } from '../../lib/session/types.js';
import { newId } from '../../lib/storage/ids.js';
import { StorageError, type ArchiveItem, type ArchivePage, type ArchiveStore, type Json, type MapStore } from '../../lib/storage/types.js';
import { KeyedLock } from '../../lib/util/keyed-lock.js';
import { serialize } from '../../lib/xml/serialize.js';
import { errorReply } from '../../lib/xml/stanza.js';
import { decide, spoolCopy, type PolicyOptions } from './policy.js';

export interface SpoolOptions extends PolicyOptions {
  /** Lifetime of a stored message (0 = until delivered or removed). */
  expiryMs: number;
  /** Messages one user's spool may hold; more are refused with resource-constraint. */
  maxMessages: number;
  /** Stored messages in flight to one session before waiting for their outcome. */
  window: number;
  /** What a write to a session without stream management means for the stored copy. */
  withoutSm: 'delete' | 'keep';
  /** Users listed with their queue length in stats(). */
  topUsers: number;
}

export interface SpoolDeps {
  host: string;
  log: Logger;
  options: SpoolOptions;
  messages: ArchiveStore<string>;
  index: MapStore<Json>;
  sessions: SessionRegistry;
  /** True when a plugin that assigns stanza-ids before the spool (the archive) is loaded. */
  stanzaIdsAssigned(): boolean;
  route(stanza: Element): Promise<void>;
  emit(event: string, arg: unknown): Promise<void>;
}

/** What the `offline` service reports (for `parleyctl stats`). Counts are since the start. */
export interface OfflineStats {
  /** Messages put in the spool. */
  stored: number;
  /** Messages written to a session from the spool (a message written twice counts twice). */
  delivered: number;
  /** Messages deleted because the client had them (acknowledged, or written without SM). */
  acked: number;
  /** Messages whose lifetime ended before they were delivered. */
  expired: number;
  /** Messages removed by their owner (XEP-0013 remove/purge) or read from the archive. */
  removed: number;
  /** Messages refused because the recipient's spool was full. */
  refused: number;
  /** Users with messages waiting, and how many messages wait in all. */
  users: number;
  messages: number;
  /** The longest queues, longest first. */
  queues: Array<{ user: string; length: number }>;
}

export interface OfflineService {
  stats(): Promise<OfflineStats>;
}

/** Per-session delivery state, in session.data under 'offline'. */
interface SessionSpoolState {
  /** The session is eligible and has been (or is being) given the spool. */
  active: boolean;
  /** Leased messages whose outcome has not come yet. */
  outstanding: number;
  /** A fill is queued on the user's lock. */
  scheduled: boolean;
}

const KEY = 'offline';

export class Spool {
  readonly counters = { stored: 0, delivered: 0, acked: 0, expired: 0, removed: 0, refused: 0 };
  private readonly lock = new KeyedLock();
  /** user -> message id -> the session it is in flight to. */
  private readonly leases = new Map<string, Map<string, ClientSession>>();
  /**
   * user -> a stored message at or after every leased one (the newest leased, usually): the next
   * fill reads only what follows it, instead of reading past all the leased messages again for
   * every acknowledgement. Forgotten when a lease is given back (a failure, a session ending),
   * since a released message before it must be found again.
   */
  private readonly tails = new Map<string, string>();
  /** user -> ids to delete in the next batch (acks come in bulk) -> the session that had them. */
  private readonly pendingDeletes = new Map<string, Map<string, ClientSession>>();
  /** user -> sessions that manage the spool themselves (XEP-0013): no automatic delivery then. */
  private readonly flexible = new Map<string, Set<ClientSession>>();

  constructor(private readonly d: SpoolDeps) {}

  private get o(): SpoolOptions {
    return this.d.options;
  }

  private ttl(): { ttlMs: number } | undefined {
    return this.o.expiryMs > 0 ? { ttlMs: this.o.expiryMs } : undefined;
  }

  // ---------- storing ----------

  /**
   * `message/offline/handle`: true when the message was stored (or is not worth keeping nor an
   * error), undefined to let the router answer as for any offline user.
   */
  async handle(ev: StanzaEvent): Promise<true | undefined> {
    const decision = decide(ev.stanza, this.o);
    if (decision === 'discard') return true;
    if (decision === 'skip') return undefined;
    const user = ev.to.bare;
    const result = await this.lock.run(user, () => this.append(user, ev));
    if (result === 'full') {
      this.counters.refused++;
      // Before the error is built: the archive forgets its copy (and its stanza-id) first.
      await this.d.emit('message/offline/refused', ev);
      // XEP-0160 names the full queue; the sender learns why, and that it may try later.
      await this.d.route(errorReply(ev.stanza, new StanzaError('resource-constraint', "the recipient's offline storage is full")));
      return true;
    }
    if (result !== 'duplicate') {
      await this.d.emit('message/offline/stored', { ...ev, id: result });
      // Stored while a resource could take it (a dying session's messages handed back): give it.
      for (const session of this.d.sessions.resources(user)) if (this.eligible(session)) this.schedule(session);
    }
    return true;
  }

  private async append(user: string, ev: StanzaEvent): Promise<string | 'full' | 'duplicate'> {
    let known = await this.indexCount(user);
    if (known >= this.o.maxMessages) {
      // The index counts expired messages until someone looks; the spool itself decides.
      known = await this.reconcile(user);
      if (known >= this.o.maxMessages) return 'full';
    }
    const now = Date.now();
    const { copy, id } = spoolCopy(ev.stanza, user, this.d.host, newId(now), this.d.stanzaIdsAssigned(), now);
    // Issued together so that the store commits both at once (one commit per stored message).
    // With the event's `durable`, both resolve once applied and the sender's session waits for
    // their commit (before acking); a conflict is still known here.
    const stored = this.d.messages.append(user, { id, ts: now, with: ev.from.bare, value: serialize(copy) },
      { ...this.ttl(), durable: ev.durable });
    const counted = this.setIndex(user, known + 1, ev.durable);
    try {
      await stored;
    } catch (err) {
      await counted.catch(() => undefined);
      // The same message (same stanza-id) offered twice, e.g. two copies of a message handed
      // back by two dying sessions: it is stored once, and counted once.
      if (err instanceof StorageError && err.code === 'conflict') {
        await this.setIndex(user, known);
        return 'duplicate';
      }
      throw err;
    }
    await counted;
    this.counters.stored++;
    return id;
  }

  // ---------- the index (per-user counts for metrics and expiry accounting) ----------

  private async indexCount(user: string): Promise<number> {
    const v = await this.d.index.get(this.d.host, user);
    return typeof v === 'number' && v > 0 ? v : 0;
  }

  private async setIndex(user: string, n: number, durable?: StanzaEvent['durable']): Promise<void> {
    if (n <= 0) {
      await this.d.index.delete(this.d.host, user);
      return;
    }
    // Outlives the newest message by one more lifetime, so its expiry is still counted when the
    // spool is looked at within that time.
    const ttl = this.o.expiryMs > 0 ? 2 * this.o.expiryMs : undefined;
    await this.d.index.set(this.d.host, user, n, { ttlMs: ttl, durable });
  }

  /** Counts the user's readable spool; what the index has beyond it has expired. Under the lock. */
  private async reconcile(user: string): Promise<number> {
    const live = await this.d.messages.count(user);
    const known = await this.indexCount(user);
    if (known > live) this.counters.expired += known - live;
    if (known !== live) await this.setIndex(user, live);
    return live;
  }

  // ---------- delivering ----------

  private state(session: ClientSession): SessionSpoolState {
    let st = session.data.get(KEY) as SessionSpoolState | undefined;
    if (!st) {
      st = { active: false, outstanding: 0, scheduled: false };
      session.data.set(KEY, st);
    }
    return st;
  }

  /** Bound, registered, available with a non-negative priority, connected, not in flexible mode. */
  private eligible(session: ClientSession): boolean {
    const jid = session.jid;
    if (!jid || !session.available || session.priority < 0 || session.hibernating) return false;
    if (this.d.sessions.get(jid.bare, jid.resource) !== session) return false;
    return !this.flexible.has(jid.bare);
  }

  /** `presence/broadcast`: a session that becomes eligible gets the spool (XEP-0160 §2). */
  presence(session: ClientSession): void {
    const jid = session.jid;
    if (!jid) return;
    const st = this.state(session);
    if (!this.eligible(session)) {
      // Unavailable or negative: becoming eligible again is a new start.
      st.active = false;
      return;
    }
    if (st.active) return;
    st.active = true;
    // The login is when expired messages are noticed and counted.
    void this.lock.run(jid.bare, () => this.reconcile(jid.bare))
      .catch((err: unknown) => this.d.log.error('offline spool count failed', { err, user: jid.bare }));
    this.schedule(session);
  }

  /** Queues a fill of the session's window on the user's lock (once at a time). */
  private schedule(session: ClientSession): void {
    const user = session.jid?.bare;
    if (!user) return;
    const st = this.state(session);
    if (st.scheduled) return;
    st.scheduled = true;
    void this.lock.run(user, async () => {
      st.scheduled = false;
      await this.fill(session, user, st);
    }).catch((err: unknown) => this.d.log.error('offline delivery failed', { err, user }));
  }

  private async fill(session: ClientSession, user: string, st: SessionSpoolState): Promise<void> {
    let room = this.o.window - st.outstanding;
    // The spool never fills more than half of what stream management lets the session hold
    // unacknowledged, so live traffic still fits and the session is not closed for it.
    const sm = session.streamManagement;
    if (sm) room = Math.min(room, Math.floor(sm.maxUnacked / 2) - sm.unacked);
    if (room <= 0 || !this.eligible(session)) return;
    const leased = this.leases.get(user);
    const tail = leased && leased.size > 0 ? this.tails.get(user) : undefined;
    const page = await this.nextPage(user, tail, room, leased?.size ?? 0);
    // Leased messages met on the way; when they are all of them, the last message looked at is
    // at or after every leased one, and the next fill can start behind it.
    let leasedSeen = 0;
    let last: string | undefined;
    for (const item of page.items) {
      if (room === 0 || !this.eligible(session)) break;
      last = item.id;
      if (this.leases.get(user)?.has(item.id)) {
        leasedSeen++;
        continue;
      }
      const stanza = await this.readable(user, item);
      if (!stanza) continue;
      this.lease(user, item.id, session);
      leasedSeen++;
      st.outstanding++;
      room--;
      this.counters.delivered++;
      session.deliver(stanza, (outcome) => this.outcome(session, user, item.id, outcome));
    }
    const leasedNow = this.leases.get(user)?.size ?? 0;
    if (last !== undefined && (tail !== undefined || leasedSeen === leasedNow)) this.tails.set(user, last);
    else if (tail === undefined) this.tails.delete(user);
  }

  /**
   * The next messages to look at: those after `tail` when there is one, else from the oldest,
   * `leased` more than `room` since the leased ones are among the oldest.
   */
  private async nextPage(user: string, tail: string | undefined, room: number, leased: number): Promise<ArchivePage<string>> {
    if (tail !== undefined) {
      try {
        return await this.d.messages.query(user, { after: tail, limit: room });
      } catch (err) {
        // The message was removed meanwhile (expired, or by its owner): start from the oldest.
        if (!(err instanceof StorageError && err.code === 'invalid')) throw err;
        this.tails.delete(user);
      }
    }
    return this.d.messages.query(user, { limit: room + leased });
  }

  /** The stored stanza, or undefined (and the item deleted) when it cannot be read back. */
  private async readable(user: string, item: ArchiveItem<string>): Promise<Element | undefined> {
    try {
      return parse(item.value);
    } catch {
      this.d.log.warn('unreadable offline message removed', { user, id: item.id });
      const n = await this.d.messages.delete(user, { ids: [item.id] });
      await this.setIndex(user, (await this.indexCount(user)) - n);
      return undefined;
    }
  }

  private lease(user: string, id: string, session: ClientSession): void {
    let m = this.leases.get(user);
    if (!m) {
      m = new Map();
      this.leases.set(user, m);
    }
    m.set(id, session);
  }

  private release(user: string, id: string, session: ClientSession): boolean {
    const m = this.leases.get(user);
    if (m?.get(id) !== session) return false;
    m.delete(id);
    if (m.size === 0) this.leases.delete(user);
    return true;
  }

  private outcome(session: ClientSession, user: string, id: string, outcome: DeliveryOutcome): void {
    const st = this.state(session);
    if (outcome === 'failed') {
      if (this.release(user, id, session)) st.outstanding = Math.max(0, st.outstanding - 1);
      this.tails.delete(user);
      this.reoffer(user);
      return;
    }
    if (outcome === 'written' && this.o.withoutSm === 'keep') {
      // Kept; the lease stays until the session ends, so this session is not given it twice.
      st.outstanding = Math.max(0, st.outstanding - 1);
      this.schedule(session);
      return;
    }
    let batch = this.pendingDeletes.get(user);
    if (!batch) {
      batch = new Map();
      this.pendingDeletes.set(user, batch);
      // One delete for everything one <a/> (or one burst of writes) covered.
      void this.lock.run(user, () => this.commitDeletes(user))
        .catch((err: unknown) => this.d.log.error('offline delete failed', { err, user }));
    }
    batch.set(id, session);
  }

  private async commitDeletes(user: string): Promise<void> {
    const batch = this.pendingDeletes.get(user);
    this.pendingDeletes.delete(user);
    if (!batch) return;
    let deleted = 0;
    try {
      // Applied at once, so the index update joins the same commit; both commit before the
      // leases go, and nothing counts as acked when the commit fails.
      const commits: Array<Promise<void>> = [];
      const n = await this.d.messages.delete(user, { ids: [...batch.keys()] }, { durable: (c) => { commits.push(c); } });
      await this.setIndex(user, (await this.indexCount(user)) - n);
      await Promise.all(commits);
      deleted = n;
    } finally {
      // Released also when the delete failed: the messages are then still there and go out again.
      this.counters.acked += deleted;
      const sessions = new Set<ClientSession>();
      for (const [id, session] of batch) {
        if (this.release(user, id, session)) {
          const st = this.state(session);
          st.outstanding = Math.max(0, st.outstanding - 1);
        }
        sessions.add(session);
      }
      for (const session of sessions) this.schedule(session);
    }
  }

  /** Messages released by one session go to the user's other eligible sessions now. */
  private reoffer(user: string): void {
    for (const session of this.d.sessions.resources(user)) if (this.eligible(session)) this.schedule(session);
  }

  /** `session/closed`: whatever it still held goes back to the spool (and to the others). */
  sessionClosed(session: ClientSession): void {
    const user = session.jid?.bare ?? session.account;
    if (!user) return;
    const flex = this.flexible.get(user);
    if (flex?.delete(session) && flex.size === 0) this.flexible.delete(user);
    const m = this.leases.get(user);
    if (m) {
      for (const [id, holder] of [...m]) if (holder === session) m.delete(id);
      if (m.size === 0) this.leases.delete(user);
    }
    this.tails.delete(user);
    this.reoffer(user);
  }

  // ---------- flexible retrieval and removal (XEP-0013, archive reads) ----------

  /** The session manages the spool itself: no automatic delivery to any of the user's sessions. */
  markFlexible(session: ClientSession): void {
    const user = session.jid?.bare;
    if (!user) return;
    let set = this.flexible.get(user);
    if (!set) {
      set = new Set();
      this.flexible.set(user, set);
    }
    set.add(session);
  }

  count(user: string): Promise<number> {
    return this.lock.run(user, () => this.reconcile(user));
  }

  /** Every stored message of the user, oldest first. */
  all(user: string): Promise<Array<{ id: string; stanza: Element }>> {
    return this.lock.run(user, async () => {
      const out: Array<{ id: string; stanza: Element }> = [];
      let after: string | undefined;
      for (;;) {
        const page = await this.d.messages.query(user, after === undefined ? {} : { after });
        for (const item of page.items) {
          const stanza = await this.readable(user, item);
          if (stanza) out.push({ id: item.id, stanza });
        }
        if (page.complete || page.items.length === 0) return out;
        after = page.items[page.items.length - 1]!.id;
      }
    });
  }

  /** The messages with these ids; item-not-found when any of them is not stored. */
  some(user: string, ids: readonly string[]): Promise<Array<{ id: string; stanza: Element }>> {
    return this.lock.run(user, async () => {
      const wanted = [...new Set(ids)];
      const page = await this.d.messages.query(user, { ids: wanted });
      if (page.items.length !== wanted.length) throw new StanzaError('item-not-found', 'no such offline message');
      const out: Array<{ id: string; stanza: Element }> = [];
      for (const item of page.items) {
        const stanza = await this.readable(user, item);
        if (!stanza) throw new StanzaError('item-not-found', 'no such offline message');
        out.push({ id: item.id, stanza });
      }
      return out;
    });
  }

  /** Removes these messages, all or none: item-not-found when any of them is not stored. */
  remove(user: string, ids: readonly string[]): Promise<number> {
    return this.lock.run(user, async () => {
      const wanted = [...new Set(ids)];
      if ((await this.d.messages.count(user, { ids: wanted })) !== wanted.length) {
        throw new StanzaError('item-not-found', 'no such offline message');
      }
      return this.deleteLocked(user, wanted);
    });
  }

  /** Removes what the user read elsewhere (from the archive): ids that are not stored are fine. */
  removeRead(user: string, ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return Promise.resolve(0);
    return this.lock.run(user, () => this.deleteLocked(user, ids));
  }

  purge(user: string): Promise<number> {
    return this.lock.run(user, async () => {
      const n = await this.d.messages.clear(user);
      await this.reconcile(user);
      this.counters.removed += n;
      return n;
    });
  }

  private async deleteLocked(user: string, ids: readonly string[]): Promise<number> {
    const n = await this.d.messages.delete(user, { ids });
    if (n > 0) {
      await this.setIndex(user, (await this.indexCount(user)) - n);
      this.counters.removed += n;
    }
    return n;
  }

  // ---------- metrics ----------

  async stats(): Promise<OfflineStats> {
    const queues: Array<{ user: string; length: number }> = [];
    let messages = 0;
    for (const user of await this.d.index.keys(this.d.host)) {
      const length = await this.count(user);
      if (length === 0) continue;
      queues.push({ user, length });
      messages += length;
    }
    queues.sort((a, b) => b.length - a.length || (a.user < b.user ? -1 : 1));
    return { ...this.counters, users: queues.length, messages, queues: queues.slice(0, this.o.topUsers) };
  }
}
