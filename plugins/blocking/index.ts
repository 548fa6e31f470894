// XEP-0191 Blocking Command, with XEP-0377 reports attached to block commands.
//
// Enforcement happens at three points, so that nothing from or to a blocked JID gets through
// whichever path a stanza takes:
// - Client stanzas to a blocked JID are refused in `pre-<kind>/*` (the client's own host) with
//   not-acceptable + <blocked/> (§3.3), before any other plugin (carbons, presence) sees them.
// - Stanzas routed to a local user (from anywhere, server-generated ones included) are checked in
//   `<kind>/<bare|full>` on the recipient's host: from a JID the recipient blocked, presence is
//   dropped, chat/normal messages and IQ get/set are answered with service-unavailable, the rest
//   dropped (§3.3: "the user will appear offline"). Presence a local user sends to a JID that user
//   blocked (presence broadcasts, probes) is dropped there too, and in `route/remote` on the
//   sender's host when the JID is not local: presence flows in neither direction.
// - An outgoing filter on every session catches what is written without being routed (e.g.
//   stored subscription requests replayed at login, offline messages) and presence that reached a
//   resource through its bare JID while only that resource (a full-JID entry) is blocked.
// Stanzas this plugin generates itself (the unavailable presence of §3.3, error replies about a
// blocked JID) are marked so its own checks let them pass.
import { randomBytes } from 'node:crypto';
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { s } from '../../lib/config/schema.js';
import { StanzaError } from '../../lib/errors.js';
import { Jid } from '../../lib/jid.js';
import { definePlugin, type IqRequest, type StanzaEvent } from '../../lib/plugin/types.js';
import type { ClientSession } from '../../lib/session/types.js';
import { cloneStanza, errorReply } from '../../lib/xml/stanza.js';
import type { RosterApi, RosterItem } from '../roster/api.js';
import { NS_BLOCKING, NS_BLOCKING_ERRORS, blockedBy, type BlockingApi } from './api.js';
import { KeyedLock } from '../../lib/util/keyed-lock.js';
import {
  NS_REASON_ABUSE_0, NS_REASON_SPAM_0, NS_REPORTING, NS_REPORTING_0, parseReport, reportValue, type Report,
} from './reports.js';

/** session.data key: true once the session retrieved the blocklist, so it gets pushes (§3.3). */
const INTERESTED = 'blocking';

/**
 * Above every other handler of the routing events (carbons strips <private/> at 500, the presence
 * plugin answers probes at 0): a blocked stanza must not reach any of them.
 */
const PRIORITY = 1000;

/**
 * Stanzas this plugin generates, which its own checks must let through: presence the blocking
 * user sends to the JID just blocked (skipSender: the sender's list is not applied), and stanzas
 * to the blocking user that come from, or in the name of, a blocked JID (skipRecipient: the
 * recipient's list is not applied). Shared by the plugin's instances on every host, since a
 * stanza can cross from one local host to another; WeakSets, so they hold nothing once a stanza
 * is gone.
 */
const skipSender = new WeakSet<Element>();
const skipRecipient = new WeakSet<Element>();

/** Whether a resource-specific entry (`user@domain/res`, `domain/res`) blocks this full JID. */
function blockedResource(entries: ReadonlySet<string>, jid: Jid): boolean {
  if (jid.resource === '') return false;
  return entries.has(jid.full) || (jid.local !== '' && entries.has(`${jid.domain}/${jid.resource}`));
}

function hasFrom(item: RosterItem): boolean {
  return item.subscription === 'from' || item.subscription === 'both';
}

function hasTo(item: RosterItem): boolean {
  return item.subscription === 'to' || item.subscription === 'both';
}

/** A parsed block or unblock command. */
interface Command {
  jids: string[];
  reports: Report[];
}

export default definePlugin({
  name: 'blocking',
  // The roster, when enabled, tells who may see the user's presence (§3.3, §3.4).
  optional: ['roster'],
  xeps: [
    { xep: 191, version: '1.3', status: 'complete' },
    { xep: 377, version: '0.4.1', status: 'complete', note: 'reports are stored for admins and logged; never forwarded' },
  ],
  options: s.object({
    max_items: s.int({
      default: 1000, min: 1,
      doc: 'most JIDs one blocklist may hold; a block command that would go beyond it is refused with policy-violation',
    }),
    reports: s.bool({
      default: true,
      doc: 'accept XEP-0377 reports attached to block commands: logged and kept in the blocking_reports archive (owner: the host)',
    }),
    report_retention: s.duration({ default: '365d', doc: 'how long a report is kept (0 = forever)' }),
  }),
  setup(ctx) {
    const o = ctx.options;
    const sessions = ctx.server.sessions;
    const store = ctx.store.map<{ ts: number }>('blocklist');
    const reports = ctx.store.archive('blocking_reports');
    const lock = new KeyedLock();
    /**
     * Blocklists of users with a bound session, kept so that routing and the outgoing filter do
     * not wait for storage; dropped when the user's last session ends. Sets are replaced, never
     * changed, so a check that holds one sees a consistent list.
     */
    const loaded = new Map<string, ReadonlySet<string>>();

    ctx.feature(NS_BLOCKING);
    if (o.reports) {
      // Prosody advertises the same set: the current namespace, and the earlier revision's
      // features that Conversations checks before it offers "report spam".
      for (const f of [NS_REPORTING, NS_REPORTING_0, NS_REASON_SPAM_0, NS_REASON_ABUSE_0]) ctx.feature(f);
    }

    const online = (owner: string): boolean => sessions.resources(owner).length > 0;

    /** The owner's blocklist; from memory for users online, else from storage. */
    function read(owner: string): ReadonlySet<string> | Promise<ReadonlySet<string>> {
      return loaded.get(owner) ?? lock.run(owner, async () => {
        // Under the owner's lock, so a read never sees half of an edit.
        const again = loaded.get(owner);
        if (again) return again;
        const set: ReadonlySet<string> = new Set(await store.keys(owner));
        if (online(owner)) loaded.set(owner, set);
        return set;
      });
    }

    const api: BlockingApi = {
      async isBlocked(owner, jid) {
        return blockedBy(await read(owner), jid);
      },
      loadedList: (owner) => loaded.get(owner),
      async list(owner) {
        return [...(await read(owner))].sort();
      },
    };
    ctx.provide('blocking', api);
    /** The blocking service of the host serving a domain, when that host runs this plugin. */
    const serviceOf = (domain: string): BlockingApi | undefined =>
      (domain === ctx.host ? api : ctx.server.host(domain)?.services.get('blocking') as BlockingApi | undefined);
    /** Whether a local user (on any host with this plugin) blocks `jid`. */
    const senderBlocks = async (sender: Jid, jid: Jid): Promise<boolean> => {
      if (sender.local === '') return false;
      const service = serviceOf(sender.domain);
      return service ? service.isBlocked(sender.bare, jid) : false;
    };

    // After a reload, the lists of users already online are loaded again for the outgoing filter.
    for (const owner of sessions.usersOnline(ctx.host)) {
      void Promise.resolve(read(owner)).catch((err: unknown) => ctx.log.error('blocklist load failed', { err, user: owner }));
    }
    ctx.hook('resource-bind', async ({ session }: { session: ClientSession }) => {
      if (session.jid) await read(session.jid.bare);
    });
    ctx.hook('resource-unbind', ({ session }: { session: ClientSession }) => {
      if (session.jid && !online(session.jid.bare)) loaded.delete(session.jid.bare);
    });

    // ---------- the commands ----------

    /** Only the account itself reads or changes its blocklist (the IQs carry no 'to', §3.2). */
    function ownOnly(req: IqRequest): void {
      if (req.from.bare !== req.to.bare) throw new StanzaError('forbidden', 'only the account itself may use its blocklist');
    }

    ctx.iq.get(NS_BLOCKING, 'blocklist', async (req) => {
      ownOnly(req);
      const owner = req.to.bare;
      const list = xml('blocklist', { xmlns: NS_BLOCKING });
      for (const jid of await api.list(owner)) list.append(xml('item', { jid }));
      // §3.3: pushes go to the resources that have requested the blocklist.
      if (req.session?.jid?.full === req.from.full) req.session.data.set(INTERESTED, true);
      return list;
    }, { to: ['bare'] });

    /** Validates every item before anything changes: one bad item refuses the whole command. */
    function parseCommand(req: IqRequest): Command {
      const payload = req.payload;
      const cmd: Command = { jids: [], reports: [] };
      const seen = new Set<string>();
      for (const item of payload.children) {
        if (typeof item === 'string' || item.name !== 'item' || (item.attrs.xmlns ?? NS_BLOCKING) !== NS_BLOCKING) continue;
        const raw = item.attrs.jid;
        if (raw === undefined) throw new StanzaError('bad-request', 'an item needs a jid attribute');
        const jid = Jid.tryParse(raw);
        if (!jid) throw new StanzaError('jid-malformed', `not a valid JID: ${raw}`);
        if (seen.has(jid.full)) continue;
        seen.add(jid.full);
        cmd.jids.push(jid.full);
        if (payload.name === 'block' && o.reports) {
          // XEP-0377 puts the report in the item; slixmpp puts one in <block/> for every item.
          const report = parseReport(item, NS_BLOCKING, req.from.bare, jid.full)
            ?? parseReport(payload, NS_BLOCKING, req.from.bare, jid.full);
          if (report) cmd.reports.push(report);
        }
      }
      // §3.3: a block without items is bad-request; an empty unblock means "unblock all" (§3.5).
      if (payload.name === 'block' && cmd.jids.length === 0) throw new StanzaError('bad-request', 'block needs at least one item');
      return cmd;
    }

    const command = (blocking: boolean) => async (req: IqRequest): Promise<undefined> => {
      ownOnly(req);
      const owner = req.to.bare;
      const cmd = parseCommand(req);
      const { before, after } = await lock.run(owner, async () => {
        const before: ReadonlySet<string> = loaded.get(owner) ?? new Set(await store.keys(owner));
        const next = new Set(before);
        if (blocking) for (const j of cmd.jids) next.add(j);
        else if (cmd.jids.length === 0) next.clear();
        else for (const j of cmd.jids) next.delete(j);
        if (next.size > o.max_items && next.size > before.size) {
          throw new StanzaError('policy-violation', `a blocklist holds at most ${o.max_items} JIDs`);
        }
        await write(owner, before, next);
        if (loaded.has(owner) || online(owner)) loaded.set(owner, next);
        return { before, after: next as ReadonlySet<string> };
      });
      await record(cmd.reports);
      await push(owner, blocking, cmd.jids);
      try {
        if (blocking) await onBlocked(owner, before, after);
        else await onUnblocked(owner, before, after);
      } catch (err) {
        // The blocklist is changed and pushed already; presence is a consequence, not the command.
        ctx.log.error('presence update after a blocklist change failed', { err, user: owner });
      }
      return undefined;
    };
    ctx.iq.set(NS_BLOCKING, 'block', command(true), { to: ['bare'] });
    ctx.iq.set(NS_BLOCKING, 'unblock', command(false), { to: ['bare'] });

    /**
     * Stores the difference between two lists. The store has no multi-key transaction, so a
     * failure part-way undoes what was written (best effort) and answers internal-server-error.
     */
    async function write(owner: string, before: ReadonlySet<string>, after: ReadonlySet<string>): Promise<void> {
      const added = [...after].filter((j) => !before.has(j));
      const removed = [...before].filter((j) => !after.has(j));
      const done: Array<() => Promise<unknown>> = [];
      try {
        const ts = Date.now();
        for (const j of added) {
          await store.set(owner, j, { ts });
          done.push(() => store.delete(owner, j));
        }
        for (const j of removed) {
          await store.delete(owner, j);
          done.push(() => store.set(owner, j, { ts }));
        }
      } catch (err) {
        ctx.log.error('blocklist write failed', { err, user: owner });
        for (const undo of done.reverse()) await undo().catch(() => undefined);
        throw new StanzaError('internal-server-error');
      }
    }

    async function record(list: readonly Report[]): Promise<void> {
      for (const r of list) {
        ctx.log.warn('abuse report', { reporter: r.reporter, jid: r.jid, reason: r.reason, text: r.text, messages: r.stanza_ids.length });
        try {
          await reports.append(ctx.host, { with: r.jid, value: reportValue(r) },
            o.report_retention > 0 ? { ttlMs: o.report_retention } : undefined);
        } catch (err) {
          // The block itself succeeded; the report is in the log at least.
          ctx.log.error('storing an abuse report failed', { err, reporter: r.reporter, jid: r.jid });
        }
      }
    }

    /** §3.3-§3.5: the change, to every resource of the user that asked for the blocklist. */
    async function push(owner: string, blocking: boolean, jids: readonly string[]): Promise<void> {
      for (const session of sessions.resources(owner)) {
        if (session.data.get(INTERESTED) !== true || !session.jid) continue;
        const change = xml(blocking ? 'block' : 'unblock', { xmlns: NS_BLOCKING });
        for (const jid of jids) change.append(xml('item', { jid }));
        await ctx.route(xml('iq', { type: 'set', id: `block-push-${randomBytes(6).toString('hex')}`, from: owner, to: session.jid.full }, change));
      }
    }

    /** Routes presence of the user to a JID the user has just blocked. */
    async function sendAsBlocker(stanza: Element): Promise<void> {
      skipSender.add(stanza);
      await ctx.route(stanza);
    }

    /** Routes presence of a JID the user has just blocked to the user's own resources. */
    async function sendToBlocker(stanza: Element): Promise<void> {
      skipRecipient.add(stanza);
      await ctx.route(stanza);
    }

    /** Full-JID entries of a list that belong to one account: they block only those resources. */
    const resourcesOf = (entries: Iterable<string>, bare: string): Jid[] => {
      const out: Jid[] = [];
      for (const e of entries) if (e.startsWith(`${bare}/`)) out.push(Jid.parse(e));
      return out;
    };

    /**
     * §3.3: a contact allowed to see the user's presence is told the user went offline; the
     * user's resources are told that contacts whose presence they had went offline (the SHOULD
     * of XEP-0191 1.3), from each of the contact's resources known here.
     */
    async function onBlocked(owner: string, before: ReadonlySet<string>, after: ReadonlySet<string>): Promise<void> {
      const roster = ctx.use<RosterApi>('roster');
      const mine = sessions.available(owner);
      if (!roster || mine.length === 0) return;
      const newly = (j: Jid): boolean => blockedBy(after, j) && !blockedBy(before, j);
      for (const item of await roster.items(owner)) {
        const contact = Jid.tryParse(item.jid);
        if (!contact) continue;
        if (hasFrom(item)) {
          for (const target of [contact, ...resourcesOf(after, contact.bare)]) {
            if (!newly(target)) continue;
            for (const s of mine) await sendAsBlocker(xml('presence', { type: 'unavailable', from: s.jid!.full, to: target.full }));
          }
        }
        if (hasTo(item)) {
          const theirs = sessions.available(contact.bare).map((s) => s.jid!);
          const sources = theirs.length > 0 ? theirs : [contact, ...resourcesOf(after, contact.bare)];
          for (const source of sources) {
            if (!newly(source)) continue;
            for (const s of mine) await sendToBlocker(xml('presence', { type: 'unavailable', from: source.full, to: s.jid!.full }));
          }
        }
      }
    }

    /**
     * §3.4: a contact allowed to see the user's presence gets the current presence of each
     * available resource again; contacts whose presence the user gets are probed, so the user's
     * resources learn their presence again.
     */
    async function onUnblocked(owner: string, before: ReadonlySet<string>, after: ReadonlySet<string>): Promise<void> {
      const roster = ctx.use<RosterApi>('roster');
      const mine = sessions.available(owner);
      if (!roster || mine.length === 0) return;
      const freed = (j: Jid): boolean => blockedBy(before, j) && !blockedBy(after, j);
      for (const item of await roster.items(owner)) {
        const contact = Jid.tryParse(item.jid);
        if (!contact) continue;
        const candidates = [contact, ...resourcesOf(before, contact.bare)].filter(freed);
        if (candidates.length === 0) continue;
        if (hasFrom(item)) {
          for (const target of candidates) {
            for (const s of mine) {
              if (!s.presence) continue;
              const p = cloneStanza(s.presence);
              p.attrs.from = s.jid!.full;
              p.attrs.to = target.full;
              // Routed as any presence: the contact's own blocklist still applies.
              await ctx.route(p);
            }
          }
        }
        if (hasTo(item)) await ctx.route(xml('presence', { type: 'probe', from: owner, to: contact.bare }));
      }
    }

    // ---------- enforcement ----------

    /** Answers a stanza from a blocked JID as if the user were offline (§3.3). */
    async function refuseIncoming(stanza: Element): Promise<void> {
      const type = stanza.attrs.type;
      const answer = stanza.name === 'message' ? type === undefined || type === 'normal' || type === 'chat'
        : stanza.name === 'iq' ? type === 'get' || type === 'set'
          : false;
      // Presence gets no answer at all; groupchat, headline, results and errors are dropped.
      if (answer) await ctx.route(errorReply(stanza, new StanzaError('service-unavailable')));
    }

    const incoming = async (ev: StanzaEvent): Promise<true | undefined> => {
      const { stanza, from, to } = ev;
      // One account's resources never block each other (XEP-0191 §5 note).
      if (from.bare === to.bare) return undefined;
      if (!skipRecipient.has(stanza) && blockedBy(await read(to.bare), from)) {
        await refuseIncoming(stanza);
        return true;
      }
      if (stanza.name === 'presence' && !skipSender.has(stanza) && await senderBlocks(from, to)) return true;
      return undefined;
    };
    for (const kind of ['message', 'presence', 'iq']) {
      for (const target of ['bare', 'full']) ctx.hook(`${kind}/${target}`, incoming, PRIORITY);
    }

    const outgoing = async (ev: StanzaEvent): Promise<true | undefined> => {
      const { stanza, from, to, session } = ev;
      if (from.bare === to.bare || !blockedBy(await read(from.bare), to)) return undefined;
      const type = stanza.attrs.type;
      // An error or a result is not answered with an error: it is just not routed.
      if (type === 'error' || (stanza.name === 'iq' && type === 'result')) return true;
      const reply = errorReply(stanza, new StanzaError('not-acceptable', 'you have blocked this JID',
        { type: 'cancel', extra: [xml('blocked', { xmlns: NS_BLOCKING_ERRORS })] }));
      skipRecipient.add(reply);
      // The session's own request is answered to it (not routed: it comes from the blocked JID).
      session?.deliver(reply);
      return true;
    };
    for (const kind of ['message', 'presence', 'iq']) {
      for (const target of ['host', 'bare', 'full']) ctx.hook(`pre-${kind}/${target}`, outgoing, PRIORITY);
    }

    // Presence of a user of this host (broadcasts, probes) to a blocked JID on another server.
    ctx.hook('route/remote', async (ev: StanzaEvent): Promise<true | undefined> => {
      const { stanza, from, to } = ev;
      if (stanza.name !== 'presence' || skipSender.has(stanza) || from.domain !== ctx.host || from.local === '') return undefined;
      return blockedBy(await read(from.bare), to) ? true : undefined;
    }, PRIORITY);

    ctx.c2s.outgoing((session, stanza) => {
      const me = session.jid;
      const fromAttr = stanza.attrs.from;
      if (!me || !fromAttr) return false;
      // Runs for every stanza written to a client: nothing is parsed unless a list is non-empty.
      const mine = skipRecipient.has(stanza) ? undefined : loaded.get(me.bare);
      let theirs: ReadonlySet<string> | undefined;
      if (stanza.name === 'presence' && !skipSender.has(stanza)) {
        // Presence from a local user that blocked this very resource (a full-JID entry), which
        // routing to the bare JID could not tell apart from the user's other resources.
        const slash = fromAttr.indexOf('/');
        const bare = slash === -1 ? fromAttr : fromAttr.slice(0, slash);
        const at = bare.indexOf('@');
        if (at !== -1 && bare !== me.bare) theirs = serviceOf(bare.slice(at + 1))?.loadedList(bare);
      }
      if ((mine === undefined || mine.size === 0) && (theirs === undefined || theirs.size === 0)) return false;
      const sender = Jid.tryParse(fromAttr);
      if (!sender || sender.bare === me.bare) return false;
      if (mine !== undefined && blockedBy(mine, sender)) return true;
      return theirs !== undefined && blockedResource(theirs, me);
    });
  },
});
