// XEP-0398 User Avatar to vCard-Based Avatars Conversion, both ways.
//
// PEP -> vCard (MUST): when the account publishes to urn:xmpp:avatar:metadata, the first <info/>
// without a url names the image; its data is looked up in urn:xmpp:avatar:data under the same
// id, checked against the id (SHA-1 of the image, a SHOULD), and stored as the vCard's PHOTO with
// the info's type. An empty <metadata/> (XEP-0084 §4.5, avatar disabled) removes the PHOTO. The
// vCard is written through the vcard plugin's own protocol, so its size limit, hash and presence
// update (XEP-0153) apply as to any vCard.
//
// vCard -> PEP (MAY, done): after the vcard plugin stored a vCard set by the account, a photo the
// metadata does not already name is published to the data node (item id = SHA-1) and then to the
// metadata node, with bytes, type and, for PNG, GIF and JPEG, the pixel size. A vCard without a
// photo disables the PEP avatar. Nodes created here are open: the vCard they come from is
// readable by anyone already (XEP-0398 §6).
//
// Each direction stops when the other side already shows the same image, so a conversion never
// bounces back.
import { createHash } from 'node:crypto';
import xml from '@xmpp/xml';
import { parse, type Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import type { PluginContext } from '../../lib/plugin/types.js';
import { NS_VCARD, photoHash, type VCardApi } from '../vcard.js';
import { NS_AVATAR_DATA, NS_AVATAR_METADATA } from './ns.js';
import type { SetObserver } from './observe.js';
import { CHANGED_EVENT, type PepChange, type PepOptions, type PepService } from './service.js';

const sha1 = (data: Buffer): string => createHash('sha1').update(data).digest('hex');

/** The image type by its magic bytes, for vCards whose PHOTO has no TYPE. */
function sniffType(data: Buffer): string | undefined {
  if (data.subarray(0, 8).equals(Buffer.from('89504e470d0a1a0a', 'hex'))) return 'image/png';
  if (data[0] === 0xff && data[1] === 0xd8) return 'image/jpeg';
  if (data.subarray(0, 4).toString('latin1') === 'GIF8') return 'image/gif';
  if (data.subarray(0, 4).toString('latin1') === 'RIFF' && data.subarray(8, 12).toString('latin1') === 'WEBP') return 'image/webp';
  return undefined;
}

/** Width and height of a PNG, GIF or JPEG image (XEP-0084 recommends them), when readable. */
export function imageSize(data: Buffer): { width: number; height: number } | undefined {
  if (sniffType(data) === 'image/png' && data.length >= 24) return { width: data.readUInt32BE(16), height: data.readUInt32BE(20) };
  if (sniffType(data) === 'image/gif' && data.length >= 10) return { width: data.readUInt16LE(6), height: data.readUInt16LE(8) };
  if (sniffType(data) === 'image/jpeg') {
    let i = 2;
    while (i + 9 < data.length) {
      if (data[i] !== 0xff) return undefined;
      const marker = data[i + 1]!;
      const length = data.readUInt16BE(i + 2);
      // Start-of-frame markers (baseline, progressive, ...) carry the size; C4, C8 and CC do not.
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { width: data.readUInt16BE(i + 7), height: data.readUInt16BE(i + 5) };
      }
      i += 2 + length;
    }
  }
  return undefined;
}

function vcardChild(el: Element, name: string): Element | undefined {
  return el.children.find((c): c is Element => typeof c !== 'string' && c.name === name);
}

export function setupAvatarConversion(ctx: PluginContext<PepOptions>, svc: PepService, observer: SetObserver,
  writeVcard: (owner: string, vcard: Element) => Promise<void>): void {
  const vcards = (): VCardApi | undefined => ctx.use<VCardApi>('vcard');

  /** The id of the image the metadata node shows now ('' for none or no node). */
  async function currentAvatar(owner: string): Promise<string> {
    const rec = await svc.store.node(owner, NS_AVATAR_METADATA);
    const last = rec ? await svc.lastItem(owner, NS_AVATAR_METADATA, rec) : undefined;
    if (!last || last.payload === '') return '';
    const info = parse(last.payload).getChildren('info').find((i) => i.attrs.url === undefined);
    return info?.attrs.id ?? '';
  }

  async function pepToVcard(owner: string, metadata: Element | undefined): Promise<void> {
    const api = vcards();
    if (!api) return;
    const infos = metadata?.getChildren('info') ?? [];
    const info = infos.find((i) => i.attrs.url === undefined);
    // Only external images: nothing the vCard could hold.
    if (infos.length > 0 && !info) return;
    const current = (await api.get(owner)) ?? xml('vCard', { xmlns: NS_VCARD });
    let photo: Element | undefined;
    if (info) {
      const id = info.attrs.id ?? '';
      const rec = await svc.store.node(owner, NS_AVATAR_DATA);
      const item = rec ? (await svc.items(owner, NS_AVATAR_DATA, rec, { ids: [id] }))[0] : undefined;
      if (!item || item.payload === '') {
        ctx.log.info('avatar metadata names no published data; vCard left as it is', { user: owner, id });
        return;
      }
      const b64 = parse(item.payload).getText().replace(/\s+/g, '');
      if (sha1(Buffer.from(b64, 'base64')) !== id) {
        ctx.log.info('avatar data does not match its id; vCard left as it is', { user: owner, id });
        return;
      }
      if (photoHash(current) === id) return;
      photo = xml('PHOTO', {}, xml('TYPE', {}, info.attrs.type ?? 'image/png'), xml('BINVAL', {}, b64));
    } else if (!vcardChild(current, 'PHOTO')) {
      return;
    }
    current.children = current.children.filter((c) => typeof c === 'string' || c.name !== 'PHOTO');
    if (photo) current.append(photo);
    await writeVcard(owner, current);
  }

  async function vcardToPep(owner: string, vcard: Element): Promise<void> {
    const hash = photoHash(vcard);
    if (hash === await currentAvatar(owner)) return;
    const opts = { publisher: owner, origin: 'server' as const, createWith: { access_model: 'open' as const } };
    if (hash === '') {
      await svc.publish(owner, NS_AVATAR_METADATA, { payload: xml('metadata', { xmlns: NS_AVATAR_METADATA }) }, opts);
      return;
    }
    const photo = vcardChild(vcard, 'PHOTO')!;
    const b64 = vcardChild(photo, 'BINVAL')!.getText().replace(/\s+/g, '');
    const data = Buffer.from(b64, 'base64');
    const type = vcardChild(photo, 'TYPE')?.getText().trim() || sniffType(data) || 'image/png';
    const attrs: Record<string, string> = { bytes: String(data.length), id: hash, type };
    const size = imageSize(data);
    if (size) {
      attrs.width = String(size.width);
      attrs.height = String(size.height);
    }
    // Data first: a client that sees the metadata must find the image (XEP-0084 §4.2).
    await svc.publish(owner, NS_AVATAR_DATA, { id: hash, payload: xml('data', { xmlns: NS_AVATAR_DATA }, b64) }, opts);
    await svc.publish(owner, NS_AVATAR_METADATA, { id: hash, payload: xml('metadata', { xmlns: NS_AVATAR_METADATA }, xml('info', attrs)) }, opts);
  }

  ctx.hook(CHANGED_EVENT, async (c: PepChange) => {
    if (c.origin !== 'client' || c.node !== NS_AVATAR_METADATA) return;
    try {
      if (c.kind === 'publish') await pepToVcard(c.owner, c.item!.payload === '' ? undefined : parse(c.item!.payload));
      else if (c.kind === 'delete' || c.kind === 'purge') await pepToVcard(c.owner, undefined);
    } catch (err) {
      ctx.log.warn('avatar to vCard conversion failed', { err, user: c.owner });
    }
  });

  observer.watch(NS_VCARD, 'vCard', async (owner, vcard) => {
    try {
      await vcardToPep(owner, vcard);
    } catch (err) {
      // A photo too large for a PEP item stays in the vCard only.
      if (err instanceof StanzaError) ctx.log.info('vCard photo not converted to PEP', { user: owner, reason: err.message });
      else throw err;
    }
  });
}
