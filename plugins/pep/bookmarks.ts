// Bookmarks kept the same in their three homes:
//   - XEP-0049 private XML storage, <storage xmlns='storage:bookmarks'/> (XEP-0048 1.0),
//   - the PEP node storage:bookmarks, one item 'current' holding that <storage/> (XEP-0048 1.1,
//     XEP-0411 bookmarks-conversion),
//   - the PEP node urn:xmpp:bookmarks:1, one item per room, the room JID as id (XEP-0402, whose
//     #compat and #compat-pep features announce this unification).
// A change made by a client in any of them is copied to the other two; what the server writes
// itself is never copied again. From the one-item forms to XEP-0402 only the rooms that changed
// are published, and the removed ones retracted, each with its notification (XEP-0402 §5.3.2
// "SHOULD NOT send notifications for unchanged items"); XEP-0402 <extensions/> of a room are
// kept, and so are the <url/> bookmarks that only XEP-0048 can hold.
//
// The PEP nodes the server creates are private (whitelist, XEP-0223) as XEP-0411 §5 and
// XEP-0402 §4 require, and the server never copies bookmarks into an existing node whose access
// model is anything else: that would show them to others.
//
// Existing private-storage bookmarks are copied to PEP when the account binds a resource and
// has no PEP bookmarks yet (XEP-0411 §4), so a PEP-only client finds them at its first login.
import xml from '@xmpp/xml';
import { parse, type Element } from 'ltx';
import { Jid } from '../../lib/jid.js';
import type { PluginContext } from '../../lib/plugin/types.js';
import type { ClientSession } from '../../lib/session/types.js';
import { KeyedLock } from '../../lib/util/keyed-lock.js';
import { NS_PRIVATE, type PrivateApi } from '../private.js';
import type { NodeConfig } from './config.js';
import { NS_BOOKMARKS2, NS_BOOKMARKS_LEGACY } from './ns.js';
import type { SetObserver } from './observe.js';
import { CHANGED_EVENT, type PepChange, type PepOptions, type PepService } from './service.js';

interface Bookmark {
  jid: string;
  name?: string;
  autojoin: boolean;
  nick?: string;
  password?: string;
  /** XEP-0402 <extensions/>, as XML, kept across conversions. */
  extensions?: string;
}

interface Legacy {
  bookmarks: Bookmark[];
  /** <url/> elements, which only XEP-0048 has. */
  urls: string[];
}

const BOOKMARKS2_CONFIG: Partial<NodeConfig> = {
  access_model: 'whitelist', persist_items: true, max_items: 'max', send_last_published_item: 'never',
};
const LEGACY_CONFIG: Partial<NodeConfig> = { access_model: 'whitelist', persist_items: true };

function text(el: Element, name: string): string | undefined {
  const c = el.getChild(name);
  return c ? c.getText() : undefined;
}

const truthy = (v: string | undefined): boolean => v === 'true' || v === '1';

function fromLegacy(storage: Element | undefined): Legacy {
  const out: Legacy = { bookmarks: [], urls: [] };
  if (!storage) return out;
  const seen = new Set<string>();
  for (const c of storage.children) {
    if (typeof c === 'string') continue;
    if (c.name === 'url') out.urls.push(c.toString());
    if (c.name !== 'conference') continue;
    const jid = Jid.tryParse(c.attrs.jid);
    // A room bookmark needs a room address to be one in XEP-0402 (its item id).
    if (!jid || jid.resource !== '' || seen.has(jid.full)) continue;
    seen.add(jid.full);
    out.bookmarks.push({
      jid: jid.full, name: c.attrs.name, autojoin: truthy(c.attrs.autojoin), nick: text(c, 'nick'), password: text(c, 'password'),
    });
  }
  return out;
}

function toLegacy(l: Legacy): Element {
  const storage = xml('storage', { xmlns: NS_BOOKMARKS_LEGACY });
  for (const b of l.bookmarks) {
    const attrs: Record<string, string> = { jid: b.jid, autojoin: b.autojoin ? 'true' : 'false' };
    if (b.name !== undefined) attrs.name = b.name;
    const c = xml('conference', attrs);
    if (b.nick !== undefined) c.append(xml('nick', {}, b.nick));
    if (b.password !== undefined) c.append(xml('password', {}, b.password));
    storage.append(c);
  }
  for (const u of l.urls) storage.append(parse(u));
  return storage;
}

function fromConference(jid: string, c: Element): Bookmark {
  const ext = c.getChild('extensions');
  return {
    jid, name: c.attrs.name, autojoin: truthy(c.attrs.autojoin), nick: text(c, 'nick'), password: text(c, 'password'),
    extensions: ext ? ext.toString() : undefined,
  };
}

function toConference(b: Bookmark): Element {
  const attrs: Record<string, string> = { xmlns: NS_BOOKMARKS2, autojoin: b.autojoin ? 'true' : 'false' };
  if (b.name !== undefined) attrs.name = b.name;
  const c = xml('conference', attrs);
  if (b.nick !== undefined) c.append(xml('nick', {}, b.nick));
  if (b.password !== undefined) c.append(xml('password', {}, b.password));
  if (b.extensions) c.append(parse(b.extensions));
  return c;
}

/** What two lists must agree on to be the same bookmarks (extensions live only in XEP-0402). */
function sameBookmark(a: Bookmark, b: Bookmark): boolean {
  return a.jid === b.jid && a.name === b.name && a.autojoin === b.autojoin && a.nick === b.nick && a.password === b.password;
}

function sameLegacy(a: Legacy, b: Legacy): boolean {
  const key = (l: Legacy): string => JSON.stringify([
    [...l.bookmarks].sort((x, y) => x.jid.localeCompare(y.jid)).map((x) => [x.jid, x.name, x.autojoin, x.nick, x.password]), l.urls,
  ]);
  return key(a) === key(b);
}

export function setupBookmarksConversion(ctx: PluginContext<PepOptions>, svc: PepService, observer: SetObserver,
  writePrivate: (owner: string, payload: Element) => Promise<void>): void {
  const lock = new KeyedLock();
  const privateApi = (): PrivateApi | undefined => ctx.use<PrivateApi>('private');

  async function privateLegacy(owner: string): Promise<Legacy | undefined> {
    const api = privateApi();
    if (!api) return undefined;
    return fromLegacy((await api.get(owner, NS_BOOKMARKS_LEGACY))[0]);
  }

  async function pepLegacy(owner: string): Promise<Legacy | undefined> {
    const rec = await svc.store.node(owner, NS_BOOKMARKS_LEGACY);
    if (!rec) return undefined;
    const last = await svc.lastItem(owner, NS_BOOKMARKS_LEGACY, rec);
    return fromLegacy(last && last.payload !== '' ? parse(last.payload) : undefined);
  }

  /** The node may receive the account's bookmarks: absent (created private) or private already. */
  async function privateNode(owner: string, node: string): Promise<boolean> {
    const rec = await svc.store.node(owner, node);
    if (rec && rec.config.access_model !== 'whitelist') {
      ctx.log.info('bookmarks not copied into a node others can read', { user: owner, node, access: rec.config.access_model });
      return false;
    }
    return true;
  }

  async function bookmarks2(owner: string): Promise<Map<string, Bookmark>> {
    const rec = await svc.store.node(owner, NS_BOOKMARKS2);
    const out = new Map<string, Bookmark>();
    if (!rec) return out;
    for (const item of await svc.items(owner, NS_BOOKMARKS2, rec)) {
      if (item.payload !== '') out.set(item.id, fromConference(item.id, parse(item.payload)));
    }
    return out;
  }

  const server = (owner: string, createWith: Partial<NodeConfig>) => ({ publisher: owner, origin: 'server' as const, createWith });

  async function writeLegacyPep(owner: string, l: Legacy): Promise<void> {
    const current = await pepLegacy(owner);
    if (current && sameLegacy(current, l)) return;
    if (!current && l.bookmarks.length === 0 && l.urls.length === 0) return;
    if (!(await privateNode(owner, NS_BOOKMARKS_LEGACY))) return;
    await svc.publish(owner, NS_BOOKMARKS_LEGACY, { id: 'current', payload: toLegacy(l) }, server(owner, LEGACY_CONFIG));
  }

  async function writeLegacyPrivate(owner: string, l: Legacy): Promise<void> {
    if (!privateApi()) return;
    const current = await privateLegacy(owner);
    if (current ? sameLegacy(current, l) : l.bookmarks.length === 0 && l.urls.length === 0) return;
    await writePrivate(owner, xml('query', { xmlns: NS_PRIVATE }, toLegacy(l)));
  }

  /** A client replaced the whole list (private storage or the storage:bookmarks node). */
  async function legacyChanged(owner: string, l: Legacy, source: 'private' | 'pep'): Promise<void> {
    if (await privateNode(owner, NS_BOOKMARKS2)) {
      const current = await bookmarks2(owner);
      for (const b of l.bookmarks) {
        const old = current.get(b.jid);
        if (old && sameBookmark(old, b)) continue;
        await svc.publish(owner, NS_BOOKMARKS2, { id: b.jid, payload: toConference({ ...b, extensions: old?.extensions }) },
          server(owner, BOOKMARKS2_CONFIG));
      }
      const gone = [...current.keys()].filter((jid) => !l.bookmarks.some((b) => b.jid === jid));
      if (gone.length > 0) await svc.retract(owner, NS_BOOKMARKS2, gone, true, 'server');
    }
    if (source === 'private') await writeLegacyPep(owner, l);
    else await writeLegacyPrivate(owner, l);
  }

  /** A client changed XEP-0402 bookmarks: rebuild the one-item forms, keeping their URLs. */
  async function bookmarks2Changed(owner: string): Promise<void> {
    const list = [...(await bookmarks2(owner)).values()];
    const urls = [(await privateLegacy(owner))?.urls ?? [], (await pepLegacy(owner))?.urls ?? []].find((u) => u.length > 0) ?? [];
    const l: Legacy = { bookmarks: list, urls };
    await writeLegacyPep(owner, l);
    await writeLegacyPrivate(owner, l);
  }

  const guarded = (owner: string, what: string, fn: () => Promise<void>): Promise<void> =>
    lock.run(owner, fn).catch((err: unknown) => ctx.log.warn('bookmarks conversion failed', { err, user: owner, what }));

  ctx.hook(CHANGED_EVENT, async (c: PepChange) => {
    if (c.origin !== 'client') return;
    if (c.node === NS_BOOKMARKS2) await guarded(c.owner, c.node, () => bookmarks2Changed(c.owner));
    if (c.node === NS_BOOKMARKS_LEGACY && c.kind === 'publish' && c.item && c.item.payload !== '') {
      // A deleted or emptied legacy node is a client dropping the old format, not its bookmarks.
      const l = fromLegacy(parse(c.item.payload));
      await guarded(c.owner, c.node, () => legacyChanged(c.owner, l, 'pep'));
    }
  });

  observer.watch(NS_PRIVATE, 'query', async (owner, query) => {
    const storage = query.getChildren('storage').find((s) => s.attrs.xmlns === NS_BOOKMARKS_LEGACY);
    if (!storage) return;
    await guarded(owner, 'private', () => legacyChanged(owner, fromLegacy(storage), 'private'));
  });

  // Checked at every login, not once per account: private storage may be written behind this
  // plugin's back (an XEP-0227 import while the server runs).
  ctx.hook('resource-bind', async ({ session }: { session: ClientSession }) => {
    const owner = session.jid?.bare;
    if (!owner || !privateApi()) return;
    await guarded(owner, 'migration', async () => {
      if (await svc.store.node(owner, NS_BOOKMARKS2) || await svc.store.node(owner, NS_BOOKMARKS_LEGACY)) return;
      const l = await privateLegacy(owner);
      if (l && (l.bookmarks.length > 0 || l.urls.length > 0)) await legacyChanged(owner, l, 'private');
    });
  });
}
