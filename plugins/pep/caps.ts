// Who gets notifications without subscribing (XEP-0163 §4, "auto-subscribe" and
// "filtered-notifications"): the available resources whose presence reaches the account — its
// own resources and contacts' — with the features their XEP-0115 capabilities announce. A
// feature `<node>+notify` asks for notifications of that node.
//
// Capabilities are resolved by their `ver`: a verified hash is cached (in memory, bounded, and
// in the store so restarts need no new queries); an unknown one is asked for once with a
// disco#info query to the resource that announced it (XEP-0115 §6.3), however many resources
// announce it at the same time. An answer whose hash does not match `ver` is used for that
// resource only and never cached (XEP-0115 §5.4, cache poisoning). Presence handling never
// waits for a query: the resource's features are filled in when the answer comes, and the
// change is reported then.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import type { Jid } from '../../lib/jid.js';
import type { Logger } from '../../lib/log.js';
import type { MapStore } from '../../lib/storage/types.js';
import { capsVer } from '../caps.js';
import { NS_CAPS } from './ns.js';

const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';

interface Entry {
  /** What the features were resolved from: `sha-1 <ver>`, `legacy <node#ver>` or '' for no caps. */
  key: string;
  /** undefined while a query is under way. */
  features: Set<string> | undefined;
}

export interface CapsDeps {
  log: Logger;
  /** Persistent cache of verified hashes, owned by the host. */
  store: MapStore<string[]>;
  host: string;
  cacheSize: number;
  /** Sends a disco#info query (as `from`) and resolves with the answer, result or error. */
  query(iq: Element): Promise<Element>;
  /** Called when a resource's features changed, with the +notify nodes it did not have before. */
  changed(owner: string, resource: string, newNotify: Set<string>): Promise<void>;
}

/** The nodes a feature set asks notifications for. */
export function notifyNodes(features: ReadonlySet<string> | undefined): Set<string> {
  const out = new Set<string>();
  if (features) for (const f of features) if (f.endsWith('+notify')) out.add(f.slice(0, -'+notify'.length));
  return out;
}

export class CapsTracker {
  /** owner bare JID -> resource full JID -> its entry. */
  private readonly recipients = new Map<string, Map<string, Entry>>();
  private readonly verified = new Map<string, Set<string>>();
  private readonly inflight = new Map<string, Promise<Set<string> | undefined>>();
  private counter = 0;

  constructor(private readonly deps: CapsDeps) {}

  /** The known resources of an owner's audience with their features (resolved ones only). */
  *audience(owner: string): Iterable<[string, Set<string>]> {
    const m = this.recipients.get(owner);
    if (!m) return;
    for (const [jid, e] of m) if (e.features) yield [jid, e.features];
  }

  forget(owner: string, resource: string): void {
    const m = this.recipients.get(owner);
    if (!m) return;
    m.delete(resource);
    if (m.size === 0) this.recipients.delete(owner);
  }

  /** An available presence of `resource` reached `owner` (or is the owner's own). */
  async available(owner: string, resource: Jid, presence: Element): Promise<void> {
    const c = presence.getChild('c', NS_CAPS);
    const hash = c?.attrs.hash;
    const ver = c?.attrs.ver;
    const node = c?.attrs.node;
    const key = !c || !ver ? '' : hash ? `${hash} ${ver}` : `legacy ${node ?? ''}#${ver}`;
    let m = this.recipients.get(owner);
    const before = m?.get(resource.full);
    if (before && before.key === key) return;
    if (!m) {
      m = new Map();
      this.recipients.set(owner, m);
    }
    const previous = notifyNodes(before?.features);
    const entry: Entry = { key, features: undefined };
    m.set(resource.full, entry);
    let features: Set<string> | undefined;
    if (key === '') features = new Set();
    else if (hash === 'sha-1') features = await this.byVer(ver!, node ?? '', owner, resource);
    else features = await this.ask(owner, resource, `${node ?? ''}#${ver}`, undefined);
    // Another presence (or unavailable) may have come while the query was under way.
    if (this.recipients.get(owner)?.get(resource.full) !== entry) return;
    entry.features = features ?? new Set();
    const added = new Set([...notifyNodes(entry.features)].filter((n) => !previous.has(n)));
    if (added.size > 0) await this.deps.changed(owner, resource.full, added);
  }

  private async byVer(ver: string, node: string, owner: string, resource: Jid): Promise<Set<string> | undefined> {
    const cached = this.verified.get(ver);
    if (cached) return cached;
    let running = this.inflight.get(ver);
    if (!running) {
      running = (async () => {
        const stored = await this.deps.store.get(this.deps.host, ver).catch(() => undefined);
        if (Array.isArray(stored)) return this.remember(ver, new Set(stored), false);
        return this.ask(owner, resource, `${node}#${ver}`, ver);
      })().finally(() => this.inflight.delete(ver));
      this.inflight.set(ver, running);
    }
    return running;
  }

  /** Asks the resource for its features; with `ver`, caches them if the hash checks out. */
  private async ask(owner: string, resource: Jid, node: string, ver: string | undefined): Promise<Set<string> | undefined> {
    const iq = xml('iq', { type: 'get', from: owner, to: resource.full, id: `pep-caps-${(++this.counter).toString(36)}` },
      xml('query', { xmlns: NS_DISCO_INFO, node }));
    const answer = await this.deps.query(iq);
    const info = answer.attrs.type === 'result' ? answer.getChild('query', NS_DISCO_INFO) : undefined;
    if (!info) {
      this.deps.log.debug('no capabilities from resource', { resource: resource.full });
      return undefined;
    }
    const features = new Set(info.getChildren('feature').map((f) => String(f.attrs.var ?? '')).filter((f) => f !== ''));
    if (ver === undefined) return features;
    if (capsVer(info) !== ver) {
      this.deps.log.info('capabilities hash does not match the answer; not cached', { resource: resource.full, ver });
      return features;
    }
    return this.remember(ver, features, true);
  }

  private remember(ver: string, features: Set<string>, persist: boolean): Set<string> {
    this.verified.set(ver, features);
    // Oldest first out: the map keeps insertion order.
    while (this.verified.size > this.deps.cacheSize) this.verified.delete(this.verified.keys().next().value!);
    if (persist) {
      void this.deps.store.set(this.deps.host, ver, [...features]).catch((err: unknown) => this.deps.log.warn('caps cache write failed', { err }));
    }
    return features;
  }
}
