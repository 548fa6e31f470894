// The upload service of one host: slots (with quotas), finished uploads, their expiry, and the
// URLs that name them. HTTP and XMPP details live elsewhere (http.ts, index.ts).
//
// Stores (owner = the host):
// - upload_secret (map): the HMAC key of PUT tokens, made once and kept, so tokens survive a
//   restart and are not in the config.
// - upload_slots (map, TTL = slot lifetime): slots handed out and not used yet.
// - upload_files (archive, id = slot id, ts = upload time, with = uploader): finished uploads; the
//   time index finds expired ones, whose blob references are then dropped.
// - upload_blobs (map): per content hash, reference count and image metadata (blobs.ts).
// - upload_usage (map, key = user): bytes a user has stored, for the total quota.
// - upload_daily (map, key = user + UTC day, TTL 2 days): bytes of slots a user asked for that day.
import { randomBytes } from 'node:crypto';
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import type { Logger } from '../../lib/log.js';
import { StorageError, type ArchiveItem, type ArchiveStore, type MapStore } from '../../lib/storage/types.js';
import type { BlobRecord, BlobStore, Received } from './blobs.js';
import { isValidMediaType, newSlotId, sanitizeFilename, signToken, verifyToken, SLOT_ID_RE, type TokenFields } from './slots.js';
import { describeImage, type ThumbnailOptions } from './thumbnails.js';

export const NS_UPLOAD = 'urn:xmpp:http:upload:0';
export const DEFAULT_TYPE = 'application/octet-stream';
const DAY_MS = 86_400_000;

/** A slot handed out and not used yet. */
export type SlotValue = {
  /** Bare JID of the requester. */
  user: string;
  name: string;
  size: number;
  /** The declared content type, '' when the request had none. */
  type: string;
  /** Milliseconds since the epoch. */
  expires: number;
};

/** A finished upload. */
export type FileValue = {
  user: string;
  name: string;
  size: number;
  /** The type the file is served with. */
  type: string;
  /** The type the slot request declared ('' for none): part of the PUT token. */
  declared: string;
  /** SHA-256, hex: the blob's name. */
  hash: string;
};

export interface UploadLimits {
  maxSize: number;
  slotLifetime: number;
  /** 0: files are kept until deleted by other means. */
  expireAfter: number;
  /** 0: no limit. */
  quotaDaily: number;
  quotaTotal: number;
  /** Longest file name kept, in UTF-8 bytes. */
  maxNameBytes: number;
  thumbnails: ThumbnailOptions;
}

export interface UploadStores {
  slots: MapStore<SlotValue>;
  files: ArchiveStore<FileValue>;
  usage: MapStore<number>;
  daily: MapStore<number>;
}

/** A finished, unexpired upload with what is known about its content. */
export interface StoredFile {
  id: string;
  file: FileValue;
  blob: BlobRecord;
  /** Upload time (ms). */
  ts: number;
  /** Expiry time (ms), or undefined when files do not expire. */
  expires: number | undefined;
}

/** Loads the HMAC key of PUT tokens, creating it on first use. */
export async function loadSecret(store: MapStore<string>, owner: string): Promise<Buffer> {
  await store.add(owner, 'hmac', randomBytes(32).toString('base64'));
  const key = await store.get(owner, 'hmac');
  if (!key) throw new Error('the upload token key could not be stored');
  return Buffer.from(key, 'base64');
}

function utcDay(now: number): string {
  return new Date(now).toISOString().slice(0, 10);
}

export class UploadService {
  /** Slots with a PUT running now: a second PUT to one of them is a conflict. */
  private readonly putting = new Set<string>();

  constructor(
    readonly host: string,
    /** Public URL prefix of GET and PUT URLs, ending in '/'. */
    readonly baseUrl: string,
    private readonly key: Buffer,
    private readonly stores: UploadStores,
    readonly blobs: BlobStore,
    readonly limits: UploadLimits,
    private readonly log: Logger,
  ) {}

  getUrl(id: string, name: string): string {
    return `${this.baseUrl}${id}/${encodeURIComponent(name)}`;
  }

  thumbnailUrl(id: string): string {
    return `${this.baseUrl}thumb/${id}.png`;
  }

  private putUrl(id: string, slot: SlotValue): string {
    const expires = Math.floor(slot.expires / 1000);
    const token = signToken(this.key, { slotId: id, size: slot.size, type: slot.type, expires });
    return `${this.getUrl(id, slot.name)}?e=${expires}&t=${token}`;
  }

  /** The slot id of one of our GET URLs (any file name part), or undefined. */
  idFromUrl(url: string): string | undefined {
    if (!url.startsWith(this.baseUrl)) return undefined;
    const m = /^([A-Za-z0-9_-]{24})\/[^/?#\s]+$/.exec(url.slice(this.baseUrl.length));
    return m ? m[1] : undefined;
  }

  /**
   * Hands out a slot (XEP-0363 §4) or throws the StanzaError the XEP asks for. Quotas are
   * counted when a slot is handed out, as Prosody does: a client cannot get around the daily
   * limit by asking for many slots at once.
   */
  async requestSlot(user: string, request: Element, now = Date.now()): Promise<Element> {
    const { filename, size: sizeText } = request.attrs as Record<string, string | undefined>;
    const contentType = request.attrs['content-type'] as string | undefined;
    if (filename === undefined || filename.trim() === '') throw new StanzaError('bad-request', 'the request needs a filename');
    if (sizeText === undefined || !/^\d{1,16}$/.test(sizeText)) throw new StanzaError('bad-request', 'the request needs a size in bytes');
    const size = Number(sizeText);
    let type = '';
    if (contentType !== undefined && contentType.trim() !== '') {
      type = contentType.trim();
      if (!isValidMediaType(type)) throw new StanzaError('bad-request', 'content-type is not a media type');
    }
    if (size === 0) throw new StanzaError('not-acceptable', 'empty files are not accepted');
    const { maxSize, quotaDaily, quotaTotal } = this.limits;
    if (size > maxSize) {
      throw new StanzaError('not-acceptable', `File too large. The maximum file size is ${maxSize} bytes`, {
        extra: [xml('file-too-large', { xmlns: NS_UPLOAD }, xml('max-file-size', {}, String(maxSize)))],
      });
    }
    if (quotaTotal > 0) {
      const used = (await this.stores.usage.get(this.host, user)) ?? 0;
      if (used + size > quotaTotal) {
        throw new StanzaError('resource-constraint', `Quota reached: your files may take ${quotaTotal} bytes, ${used} are in use`);
      }
    }
    const dailyKey = `${user} ${utcDay(now)}`;
    let counted = false;
    if (quotaDaily > 0) {
      const today = await this.stores.daily.increment(this.host, dailyKey, size, { ttlMs: 2 * DAY_MS });
      counted = true;
      if (today > quotaDaily) {
        await this.stores.daily.increment(this.host, dailyKey, -size);
        const tomorrow = new Date(Math.floor(now / DAY_MS + 1) * DAY_MS).toISOString().replace(/\.\d{3}Z$/, 'Z');
        throw new StanzaError('resource-constraint', `Quota reached: you may upload ${quotaDaily} bytes a day`, {
          extra: [xml('retry', { xmlns: NS_UPLOAD, stamp: tomorrow })],
        });
      }
    }
    const id = newSlotId();
    const slot: SlotValue = { user, name: sanitizeFilename(filename, this.limits.maxNameBytes), size, type, expires: now + this.limits.slotLifetime };
    try {
      await this.stores.slots.set(this.host, id, slot, { ttlMs: this.limits.slotLifetime });
    } catch (err) {
      if (counted) await this.stores.daily.increment(this.host, dailyKey, -size).catch(() => undefined);
      throw err;
    }
    this.log.debug('upload slot', { user, id, size, type });
    return xml('slot', { xmlns: NS_UPLOAD },
      xml('put', { url: this.putUrl(id, slot) }),
      xml('get', { url: this.getUrl(id, slot.name) }));
  }

  /**
   * What a PUT to this slot id may do: 'open' with the slot, 'done' when the upload already
   * happened (with what its token was made from), or undefined for an unknown slot.
   */
  async slotState(id: string): Promise<{ state: 'open'; slot: SlotValue } | { state: 'done'; slot: Pick<SlotValue, 'size' | 'type'> } | undefined> {
    if (!SLOT_ID_RE.test(id)) return undefined;
    const slot = await this.stores.slots.get(this.host, id);
    if (slot) return { state: 'open', slot };
    const done = await this.stores.files.get(this.host, id);
    return done ? { state: 'done', slot: { size: done.value.size, type: done.value.declared } } : undefined;
  }

  verifyToken(fields: TokenFields, token: string): boolean {
    return verifyToken(this.key, fields, token);
  }

  /** Marks a PUT as running; false when one already runs for this slot. */
  beginPut(id: string): boolean {
    if (this.putting.has(id)) return false;
    this.putting.add(id);
    return true;
  }

  endPut(id: string): void {
    this.putting.delete(id);
  }

  /**
   * Stores a received body as the slot's file: blob reference, upload record, usage; then the
   * slot is gone. Returns false when the slot was used meanwhile (the reference is dropped).
   */
  async finish(id: string, slot: SlotValue, type: string, body: Extract<Received, { ok: true }>, now = Date.now()): Promise<boolean> {
    await this.blobs.commit(body.tmp, body.hash, body.size, (file) => describeImage(file, this.limits.thumbnails));
    const value: FileValue = { user: slot.user, name: slot.name, size: body.size, type, declared: slot.type, hash: body.hash };
    try {
      await this.stores.files.append(this.host, { id, ts: now, with: slot.user, value });
    } catch (err) {
      await this.blobs.release(body.hash);
      if (err instanceof StorageError && err.code === 'conflict') return false;
      throw err;
    }
    await this.stores.slots.delete(this.host, id);
    await this.stores.usage.increment(this.host, slot.user, body.size);
    this.log.info('file uploaded', { user: slot.user, id, size: body.size, hash: body.hash });
    return true;
  }

  /** A finished upload that has not expired, with its blob record. */
  async file(id: string, now = Date.now()): Promise<StoredFile | undefined> {
    if (!SLOT_ID_RE.test(id)) return undefined;
    const item = await this.stores.files.get(this.host, id);
    if (!item) return undefined;
    const expires = this.limits.expireAfter > 0 ? item.ts + this.limits.expireAfter : undefined;
    if (expires !== undefined && expires <= now) return undefined;
    const blob = await this.blobs.get(item.value.hash);
    if (!blob) return undefined;
    return { id, file: item.value, blob, ts: item.ts, expires };
  }

  private async remove(item: ArchiveItem<FileValue>): Promise<void> {
    // Only the caller that actually deleted the record drops the references, so a file
    // removed twice at once is not released twice.
    if ((await this.stores.files.delete(this.host, { ids: [item.id] })) !== 1) return;
    await this.stores.usage.increment(this.host, item.value.user, -item.value.size);
    await this.blobs.release(item.value.hash);
  }

  /** Deletes expired uploads (and blobs nobody refers to any more); returns how many. */
  async expire(now = Date.now()): Promise<number> {
    if (this.limits.expireAfter <= 0) return 0;
    const end = now - this.limits.expireAfter;
    const pageSize = 200;
    let removed = 0;
    for (;;) {
      const page = await this.stores.files.query(this.host, { end, limit: pageSize });
      for (const item of page.items) {
        await this.remove(item);
        removed++;
      }
      if (page.items.length < pageSize) break;
    }
    if (removed > 0) this.log.info('expired uploads removed', { count: removed });
    return removed;
  }
}
