// Message enrichment: a plaintext message whose body is nothing but one of our GET URLs gets the
// file's metadata as XEP-0447 stateless file sharing (XEP-0446 metadata, XEP-0300 hash, XEP-0264
// thumbnail as a data: URI), so the recipient can show a preview without fetching the file.
// It runs before routing on the sender's server, so archived, carbon and offline copies are all
// the same message. Anything more than "here is a file" is left as it is: encrypted payloads
// (the server must not add plaintext facts about them), replies, corrections, existing metadata.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { NS_CLIENT } from '../../lib/xml/ns.js';
import type { StoredFile } from './service.js';

export const NS_SFS = 'urn:xmpp:sfs:0';
export const NS_FILE_METADATA = 'urn:xmpp:file:metadata:0';
export const NS_HASHES = 'urn:xmpp:hashes:2';
export const NS_THUMBS = 'urn:xmpp:thumbs:1';
export const NS_URL_DATA = 'http://jabber.org/protocol/url-data';
export const NS_FALLBACK = 'urn:xmpp:fallback:0';
export const NS_OOB = 'jabber:x:oob';

/** End-to-end encryption payloads: such a message is never touched (checked first, explicitly). */
const ENCRYPTED = new Set([
  'eu.siacs.conversations.axolotl', // OMEMO 0.3 (Conversations, Dino, Monal)
  'urn:xmpp:omemo:1',
  'urn:xmpp:omemo:2', // XEP-0384
  'jabber:x:encrypted', // XEP-0027 legacy OpenPGP
  'urn:xmpp:openpgp:0', // XEP-0373
  'urn:xmpp:eme:0', // XEP-0380: says the body is a placeholder for something encrypted
]);

/**
 * Payloads that may come with the URL without changing what the message is: receipts and
 * markers requests, origin-id, chat states, processing hints, the sender's nick.
 */
const COMPANIONS = new Map<string, readonly string[] | '*'>([
  ['urn:xmpp:receipts', ['request']],
  ['urn:xmpp:chat-markers:0', ['markable']],
  ['urn:xmpp:sid:0', ['origin-id']],
  ['http://jabber.org/protocol/chatstates', '*'],
  ['urn:xmpp:hints', '*'],
  ['http://jabber.org/protocol/nick', ['nick']],
]);

function elements(el: Element): Element[] {
  return el.children.filter((c): c is Element => typeof c !== 'string');
}

/**
 * The URL a message shares, when the message is only that: one body that is the URL (trimmed),
 * optionally the same URL as XEP-0066 out-of-band data, and companions. Otherwise undefined.
 */
export function sharedUrl(stanza: Element): string | undefined {
  if (stanza.name !== 'message' || stanza.attrs.type === 'error') return undefined;
  const ns = stanza.attrs.xmlns ?? NS_CLIENT;
  let url: string | undefined;
  let oob: Element | undefined;
  for (const child of elements(stanza)) {
    // The stream parser writes xmlns wherever it changes, so a missing one is the parent's.
    const cns = child.attrs.xmlns ?? ns;
    if (ENCRYPTED.has(cns)) return undefined;
    if (cns === ns && child.name === 'body') {
      if (url !== undefined || elements(child).length > 0) return undefined;
      url = child.text().trim();
      continue;
    }
    if (cns === ns && child.name === 'thread') continue;
    if (cns === NS_OOB && child.name === 'x') {
      if (oob) return undefined;
      oob = child;
      continue;
    }
    const allowed = COMPANIONS.get(cns);
    if (allowed === '*' || allowed?.includes(child.name)) continue;
    return undefined;
  }
  if (!url || /\s/.test(url)) return undefined;
  if (oob) {
    const parts = elements(oob);
    if (parts.some((p) => p.name !== 'url' && p.name !== 'desc')) return undefined;
    if (oob.getChildText('url')?.trim() !== url) return undefined;
  }
  return url;
}

/** The XEP-0447 element for a stored file, shared at `url`. */
export function fileSharingElement(url: string, f: StoredFile): Element {
  const meta = xml('file', { xmlns: NS_FILE_METADATA },
    xml('media-type', {}, f.file.type),
    xml('name', {}, f.file.name),
    xml('size', {}, String(f.file.size)));
  const image = f.blob.image;
  if (image) {
    meta.append(xml('width', {}, String(image.width)));
    meta.append(xml('height', {}, String(image.height)));
  }
  meta.append(xml('hash', { xmlns: NS_HASHES, algo: 'sha-256' }, Buffer.from(f.file.hash, 'hex').toString('base64')));
  if (image) {
    meta.append(xml('thumbnail', {
      xmlns: NS_THUMBS,
      uri: `data:image/png;base64,${image.thumb}`,
      'media-type': 'image/png',
      width: String(image.thumbWidth),
      height: String(image.thumbHeight),
    }));
  }
  return xml('file-sharing', { xmlns: NS_SFS }, meta,
    xml('sources', {}, xml('url-data', { xmlns: NS_URL_DATA, target: url })));
}

/**
 * Adds file sharing to a message that sharedUrl() accepted: the XEP-0447 element, the XEP-0428
 * marker that the body is its fallback, and XEP-0066 out-of-band data when the client sent none
 * (XEP-0447 recommends it for clients that only know OOB).
 */
export function enrichMessage(stanza: Element, url: string, f: StoredFile): void {
  stanza.append(fileSharingElement(url, f));
  stanza.append(xml('fallback', { xmlns: NS_FALLBACK, for: NS_SFS }));
  const hasOob = elements(stanza).some((c) => c.name === 'x' && c.attrs.xmlns === NS_OOB);
  if (!hasOob) stanza.append(xml('x', { xmlns: NS_OOB }, xml('url', {}, url)));
}
