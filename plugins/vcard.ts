// XEP-0054 vcard-temp: each account stores one vCard, world-readable at its bare JID; and the
// XEP-0153 avatar hash in the account's presence.
//
// Missing vCards. XEP-0054 §3.1 lets the server answer the owner's own request with either
// item-not-found or an empty <vCard/>; we answer an empty <vCard/>, which every client reads as
// "nothing stored yet" (profile editors start from it instead of showing an error). For another
// user's vCard §3.3 requires an error (service-unavailable or item-not-found): item-not-found, as
// Prosody's mod_vcard answers. (An account that does not exist gets service-unavailable from the
// router before this plugin is asked.)
//
// Avatar hash. The server adds <x xmlns='vcard-temp:x:update'><photo>SHA-1</photo></x> to the
// user's available presence (broadcast and directed), <photo/> when the vCard has no photo. An
// update element the client put there itself is replaced, as Prosody and ejabberd do: the server
// holds the stored vCard, so its hash is the true one, while a client's may be stale (another
// resource changed the vCard, the conflict XEP-0153 §4.3 makes clients resolve by re-downloading).
// When the stored vCard cannot be read, the client's element is left as it is.
import { createHash } from 'node:crypto';
import xml from '@xmpp/xml';
import { parse, type Element } from 'ltx';
import { s } from '../lib/config/schema.js';
import { StanzaError } from '../lib/errors.js';
import { definePlugin, type StanzaEvent } from '../lib/plugin/types.js';
import type { ClientSession } from '../lib/session/types.js';
import { serialize } from '../lib/xml/serialize.js';
import type { PresenceApi } from './presence/api.js';

export const NS_VCARD = 'vcard-temp';
export const NS_VCARD_UPDATE = 'vcard-temp:x:update';

/** What is stored per account: the vCard as sent, and the SHA-1 (hex) of its photo, '' for none. */
interface Stored {
  xml: string;
  photo: string;
}

/** The `vcard` service: ctx.use<VCardApi>('vcard'). */
export interface VCardApi {
  /** The stored vCard of a local account, if any. */
  get(owner: string): Promise<Element | undefined>;
  /** SHA-1 (hex) of the account's avatar, '' when its vCard has no photo or there is no vCard. */
  avatarHash(owner: string): Promise<string>;
}

// RFC 4648 base64 with its padding optional (some clients leave it out; decoders accept both).
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

/** The first child element with this name in the vCard's namespace. */
function child(el: Element, name: string): Element | undefined {
  for (const c of el.children) {
    if (typeof c !== 'string' && c.name === name && (c.attrs.xmlns === undefined || c.attrs.xmlns === NS_VCARD)) return c;
  }
  return undefined;
}

/**
 * The avatar hash of a vCard (XEP-0153 §3.1: SHA-1 of the image data, not of its base64). Only
 * BINVAL counts: an EXTVAL (§4.5 SHOULD NOT) gives no data to hash. Whitespace in the base64 is
 * ignored (§4.6); anything else that is not base64 is refused.
 */
export function photoHash(vcard: Element): string {
  const photo = child(vcard, 'PHOTO');
  const binval = photo ? child(photo, 'BINVAL') : undefined;
  const b64 = binval ? binval.getText().replace(/\s+/g, '') : '';
  if (b64 === '') return '';
  if (!BASE64.test(b64)) throw new StanzaError('bad-request', 'PHOTO/BINVAL is not base64');
  return createHash('sha1').update(Buffer.from(b64, 'base64')).digest('hex');
}

function isStored(v: unknown): v is Stored {
  return typeof v === 'object' && v !== null && typeof (v as Stored).xml === 'string' && typeof (v as Stored).photo === 'string';
}

/** Replaces any update element of the presence with the server's. */
function setUpdate(presence: Element, hash: string): void {
  presence.children = presence.children.filter((c) => typeof c === 'string' || c.name !== 'x' || c.attrs.xmlns !== NS_VCARD_UPDATE);
  presence.append(xml('x', { xmlns: NS_VCARD_UPDATE }, hash ? xml('photo', {}, hash) : xml('photo')));
}

export default definePlugin({
  name: 'vcard',
  // The presence service re-broadcasts presence when the avatar changes.
  optional: ['presence'],
  xeps: [
    { xep: 54, version: '1.2', status: 'complete' },
    { xep: 153, version: '1.1', status: 'complete', note: 'the server computes the hash and puts it in presence' },
  ],
  options: s.object({
    max_size: s.size({
      default: '128KiB', min: 1024,
      doc: 'largest vCard accepted, as serialised XML (an avatar counts in base64); larger ones are refused with policy-violation',
    }),
  }),
  setup(ctx) {
    const o = ctx.options;
    const store = ctx.store.keyval<{ xml: string; photo: string }>('vcard');
    const sessions = ctx.server.sessions;
    /** Avatar hashes of accounts with a bound session: every presence they send needs one. */
    const hashes = new Map<string, string>();

    ctx.feature(NS_VCARD);

    async function load(owner: string): Promise<Stored | undefined> {
      const v = await store.get(owner);
      if (v === undefined) return undefined;
      if (!isStored(v)) throw new Error(`unreadable vCard of ${owner}`);
      return v;
    }

    async function avatarHash(owner: string): Promise<string> {
      const cached = hashes.get(owner);
      if (cached !== undefined) return cached;
      const hash = (await load(owner))?.photo ?? '';
      if (sessions.resources(owner).length > 0) hashes.set(owner, hash);
      return hash;
    }

    const api: VCardApi = {
      async get(owner) {
        const v = await load(owner);
        return v ? parse(v.xml) : undefined;
      },
      avatarHash,
    };
    ctx.provide('vcard', api);

    ctx.iq.get(NS_VCARD, 'vCard', async ({ from, to }) => {
      const v = await api.get(to.bare);
      if (v) return v;
      if (from.bare === to.bare) return xml('vCard', { xmlns: NS_VCARD });
      throw new StanzaError('item-not-found', 'this account has no vCard');
    }, { to: ['bare'] });

    ctx.iq.set(NS_VCARD, 'vCard', async ({ from, to, payload }) => {
      // XEP-0054 §3.2: only the account itself sets its vCard.
      if (from.bare !== to.bare) throw new StanzaError('forbidden', "only the account itself may change its vCard");
      const owner = to.bare;
      const text = serialize(payload);
      const size = Buffer.byteLength(text);
      if (size > o.max_size) {
        throw new StanzaError('policy-violation', `the vCard is ${size} bytes; this server accepts at most ${o.max_size}`);
      }
      const photo = photoHash(payload);
      const before = await avatarHash(owner);
      const empty = payload.children.every((c) => typeof c === 'string' && c.trim() === '')
        && Object.keys(payload.attrs).every((k) => k === 'xmlns');
      // An empty vCard is no vCard: other users then get item-not-found, not an empty card.
      if (empty) await store.delete(owner);
      else await store.set(owner, { xml: text, photo });
      if (hashes.has(owner) || sessions.resources(owner).length > 0) hashes.set(owner, photo);
      if (photo !== before) {
        // XEP-0153: contacts learn of the new avatar from the hash in presence; the broadcast
        // handler below puts the new one in.
        await ctx.use<PresenceApi>('presence')?.rebroadcast(owner);
      }
      return undefined;
    }, { to: ['bare'] });

    /** Puts the hash into the user's available presence (broadcast or directed). */
    const amend = async ({ stanza, session }: StanzaEvent): Promise<undefined> => {
      if (stanza.attrs.type !== undefined || !session?.jid) return undefined;
      let hash: string;
      try {
        hash = await avatarHash(session.jid.bare);
      } catch (err) {
        ctx.log.warn('no avatar hash for presence', { err, user: session.jid.bare });
        return undefined;
      }
      setUpdate(stanza, hash);
      return undefined;
    };
    // Above the presence plugin's broadcast handler, which sends the stanza out.
    ctx.hook('presence/broadcast', amend, 10);
    // XEP-0153 §4.1 wants the hash in directed presence too (e.g. when joining a MUC room).
    for (const target of ['host', 'bare', 'full']) ctx.hook(`pre-presence/${target}`, amend, 10);

    ctx.hook('resource-unbind', ({ session }: { session: ClientSession }) => {
      if (session.jid && sessions.resources(session.jid.bare).length === 0) hashes.delete(session.jid.bare);
    });
  },
});
