// XEP-0363 HTTP File Upload, served as its own domain (upload.<host>), with content dedup,
// image thumbnails and XEP-0447 message enrichment (DESIGN §7).
//
// - XMPP: the component answers disco (identity store/file, max-file-size form) and slot
//   requests from the host's own users; the host lists it in its disco#items.
// - HTTP: mounted per host under http_path (two hosts never share a mount); PUT URLs carry an
//   HMAC token over slot id, size, declared type and expiry; GET URLs are the slot id (144 random
//   bits) plus the file name.
// - Files: blobs.ts (one file per SHA-256, reference counted), thumbnails.ts (sharp),
//   service.ts (records, quotas, expiry), enrich.ts (file sharing in messages).
import path from 'node:path';
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { s } from '../../lib/config/schema.js';
import { StanzaError } from '../../lib/errors.js';
import { prepDomain } from '../../lib/jid.js';
import { definePlugin, type StanzaEvent } from '../../lib/plugin/types.js';
import { NS_DATA_FORMS, NS_DISCO_INFO, NS_DISCO_ITEMS } from '../../lib/xml/ns.js';
import { firstChild, iqResult } from '../../lib/xml/stanza.js';
import { BlobStore, type BlobRecord } from './blobs.js';
import { enrichMessage, sharedUrl } from './enrich.js';
import { uploadHttpHandler } from './http.js';
import { loadSecret, NS_UPLOAD, UploadService, type FileValue, type SlotValue } from './service.js';

/** The `http_upload` service other plugins use: `ctx.use<HttpUploadApi>('http_upload')`. */
export interface HttpUploadApi {
  readonly domain: string;
  readonly maxFileSize: number;
  /** What is known about one of this host's GET URLs (a finished, unexpired upload). */
  describe(url: string): Promise<{
    name: string;
    size: number;
    type: string;
    /** SHA-256, hex. */
    sha256: string;
    width?: number;
    height?: number;
    /** The PNG thumbnail's own URL, for images. */
    thumbnailUrl?: string;
  } | undefined>;
}

const withHost = (template: string, host: string): string => template.replace(/\{host\}/g, host);

function checkBaseUrl(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(withHost(value, 'example.com'));
  } catch {
    return 'must be an absolute http: or https: URL';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'must be an http: or https: URL';
  if (url.search || url.hash || !url.pathname.endsWith('/')) return "must end with '/' and have no query or fragment";
  return undefined;
}

const options = s.object({
  domain: s.string({ default: 'upload.{host}', minLength: 1, doc: 'the upload service address ({host} = the host name), listed in the host\'s disco#items' }),
  name: s.string({ default: 'HTTP File Upload', doc: 'service name shown by clients (disco identity)' }),
  base_url: s.string({
    default: 'https://{host}:5443/upload/{host}/',
    check: checkBaseUrl,
    doc: 'public URL that http_path is reached at, ending in /; PUT and GET URLs start with it (XEP-0363 asks for https)',
  }),
  http_path: s.string({
    default: '/upload/{host}/',
    pattern: /^\/(?:[A-Za-z0-9._~{}-]+\/)*$/,
    doc: 'path prefix on the HTTP listener, per host',
  }),
  dir: s.string({ default: 'upload', minLength: 1, doc: 'where files are stored, one subdirectory per host (relative to data_dir)' }),
  max_size: s.size({ default: '100MiB', min: 1, doc: 'largest file (announced as max-file-size)' }),
  slot_lifetime: s.duration({ default: '5m', min: '1s', doc: 'how long a slot\'s PUT URL stays valid (XEP-0363 suggests about a minute)' }),
  expire_after: s.duration({ default: '30d', doc: 'files are deleted this long after their upload; 0 keeps them' }),
  cleanup_interval: s.duration({ default: '1h', min: '100ms', max: '24d', doc: 'how often expired files are looked for' }),
  quota_daily: s.size({ default: '1GiB', doc: 'bytes of slots a user may request per UTC day; 0 = no limit' }),
  quota_total: s.size({ default: '5GiB', doc: 'bytes of unexpired files a user may keep; 0 = no limit' }),
  max_filename_length: s.int({ default: 200, min: 16, max: 1024, doc: 'longest file name kept, in UTF-8 bytes (longer names are cut, keeping the extension)' }),
  stale_temp_after: s.duration({ default: '1d', min: '1m', doc: 'temporary files this old when the plugin starts were left by a crash and are deleted' }),
  thumbnail_size: s.int({ default: 64, min: 8, max: 512, doc: 'longest side of image thumbnails in pixels (PNG, sent inside messages)' }),
  image_max_pixels: s.int({ default: 50_000_000, min: 1, doc: 'images with more pixels get no thumbnail (decompression bombs)' }),
  enrich_messages: s.bool({ default: true, doc: 'add XEP-0447 file sharing (metadata, hash, thumbnail) to messages that share one of our URLs' }),
});

function discoInfo(name: string, maxSize: number): Element {
  return xml('query', { xmlns: NS_DISCO_INFO },
    xml('identity', { category: 'store', type: 'file', name }),
    xml('feature', { var: NS_DISCO_INFO }),
    xml('feature', { var: NS_DISCO_ITEMS }),
    xml('feature', { var: NS_UPLOAD }),
    // XEP-0363 §3: the size limit as an XEP-0128 extension, so clients need no extra round trip.
    xml('x', { xmlns: NS_DATA_FORMS, type: 'result' },
      xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, NS_UPLOAD)),
      xml('field', { var: 'max-file-size' }, xml('value', {}, String(maxSize)))));
}

export default definePlugin({
  name: 'http_upload',
  xeps: [
    { xep: 363, version: '1.2.0', status: 'complete' },
    { xep: 447, status: 'partial', note: 'server side: added to messages that share one of our URLs' },
    { xep: 446, status: 'partial', note: 'media-type, name, size, width, height, hash, thumbnail' },
    { xep: 264, status: 'partial', note: 'PNG thumbnails as data: URIs and at their own URL' },
  ],
  options,
  async setup(ctx) {
    const o = ctx.options;
    const host = ctx.host;
    const domain = prepDomain(withHost(o.domain, host));
    // Through URL so that an internationalised host name comes out as punycode in the host
    // and percent-encoded in the path, as clients and the HTTP router see it.
    const baseUrl = new URL(withHost(o.base_url, host)).href;
    const httpPath = new URL(withHost(o.http_path, host), 'http://localhost').pathname;
    if (host === '.' || host === '..' || /[/\\]/.test(host)) throw new Error(`host name '${host}' cannot name a directory`);
    const dir = path.resolve(ctx.server.dataDir, o.dir, host);

    const blobs = new BlobStore(dir, ctx.store.map<BlobRecord>('upload_blobs'), host, ctx.log);
    await blobs.init();
    const key = await loadSecret(ctx.store.map<string>('upload_secret'), host);
    const svc = new UploadService(host, baseUrl, key, {
      slots: ctx.store.map<SlotValue>('upload_slots'),
      files: ctx.store.archive<FileValue>('upload_files'),
      usage: ctx.store.map<number>('upload_usage'),
      daily: ctx.store.map<number>('upload_daily'),
    }, blobs, {
      maxSize: o.max_size,
      slotLifetime: o.slot_lifetime,
      expireAfter: o.expire_after,
      quotaDaily: o.quota_daily,
      quotaTotal: o.quota_total,
      maxNameBytes: o.max_filename_length,
      thumbnails: { size: o.thumbnail_size, maxPixels: o.image_max_pixels },
    }, ctx.log);

    ctx.component(domain, async ({ stanza, from, to }) => {
      const type = stanza.attrs.type;
      if (stanza.name === 'message') {
        if (type !== 'error' && type !== 'headline') throw new StanzaError('service-unavailable');
        return;
      }
      // Presence, and IQ results and errors, need no answer from a service without sessions.
      if (stanza.name !== 'iq' || (type !== 'get' && type !== 'set')) return;
      const payload = firstChild(stanza);
      if (!payload || stanza.children.filter((c) => typeof c !== 'string').length !== 1) {
        throw new StanzaError('bad-request', 'an iq get or set has exactly one child element');
      }
      if (to.local !== '' || to.resource !== '') throw new StanzaError('service-unavailable');
      const ns = payload.attrs.xmlns;
      let answer: Element | undefined;
      if (type === 'get' && payload.name === 'query' && ns === NS_DISCO_INFO) {
        if (payload.attrs.node) throw new StanzaError('item-not-found');
        answer = discoInfo(o.name, o.max_size);
      } else if (type === 'get' && payload.name === 'query' && ns === NS_DISCO_ITEMS) {
        if (payload.attrs.node) throw new StanzaError('item-not-found');
        answer = xml('query', { xmlns: NS_DISCO_ITEMS });
      } else if (type === 'get' && payload.name === 'request' && ns === NS_UPLOAD) {
        // Only this host's own users: the service stores files for accounts it can bill to.
        if (from.domain !== host || from.local === '') {
          throw new StanzaError('not-allowed', `only users of ${host} may upload here`);
        }
        answer = await svc.requestSlot(from.bare, payload);
      } else {
        throw new StanzaError('service-unavailable');
      }
      await ctx.route(iqResult(stanza, answer));
    });
    ctx.discoItem({ jid: domain, name: o.name });
    ctx.http(httpPath, uploadHttpHandler(svc), { maxBodySize: o.max_size });

    if (o.enrich_messages) {
      // Before carbons (-100) and archiving, so every copy carries the same metadata.
      const enrich = async (ev: StanzaEvent): Promise<undefined> => {
        const url = sharedUrl(ev.stanza);
        if (url === undefined) return undefined;
        const id = svc.idFromUrl(url);
        const file = id === undefined ? undefined : await svc.file(id);
        if (file) enrichMessage(ev.stanza, url, file);
        return undefined;
      };
      ctx.hook('pre-message/bare', enrich, 200);
      ctx.hook('pre-message/full', enrich, 200);
    }

    const api: HttpUploadApi = {
      domain,
      maxFileSize: o.max_size,
      async describe(url) {
        const id = svc.idFromUrl(url);
        const file = id === undefined ? undefined : await svc.file(id);
        if (!file) return undefined;
        const { name, size, type, hash } = file.file;
        const image = file.blob.image;
        return {
          name, size, type, sha256: hash,
          ...(image ? { width: image.width, height: image.height, thumbnailUrl: svc.thumbnailUrl(file.id) } : {}),
        };
      },
    };
    ctx.provide('http_upload', api);

    let closed = false;
    ctx.onClose(() => {
      closed = true;
    });
    const housekeeping = async (): Promise<void> => {
      await svc.expire();
    };
    ctx.every(o.cleanup_interval, housekeeping);
    // Leftovers of a crash, then what expired while the server was down; not awaited, so a
    // large directory does not hold up the boot.
    void (async () => {
      const swept = await blobs.sweep(o.stale_temp_after);
      if (swept.tmp || swept.orphans) ctx.log.info('upload directory swept', swept);
      if (!closed) await housekeeping();
    })().catch((err: unknown) => {
      if (!closed) ctx.log.error('upload directory sweep failed', { err });
    });
  },
});
