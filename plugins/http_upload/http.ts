// The HTTP side of XEP-0363: PUT stores a slot's file, GET and HEAD serve files and thumbnails
// (with Range and conditional requests), OPTIONS answers CORS preflights for web clients.
//
// Paths under the mount: /<slot id>/<file name> (the file; the name is only there for people and
// download tools, the slot id alone finds the file) and /thumb/<slot id>.png (its thumbnail).
import { open } from 'node:fs/promises';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { HttpHandler } from '../../lib/net/http.js';
import { DEFAULT_TYPE, type StoredFile, type UploadService } from './service.js';
import { isValidMediaType, mediaTypeEssence, SLOT_ID_RE } from './slots.js';

/** Every response, errors included, so a web client can read why its upload failed. */
const CORS: OutgoingHttpHeaders = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, HEAD, PUT, OPTIONS',
  'Access-Control-Allow-Headers': 'Content-Type, Authorization',
  'Access-Control-Expose-Headers': 'Content-Length, Content-Range, Content-Disposition, ETag',
  'Access-Control-Max-Age': '86400',
};

/**
 * Served files are other people's content on our origin: never sniffed into something
 * executable, never scripted, never framed.
 */
const FILE_SECURITY: OutgoingHttpHeaders = {
  'X-Content-Type-Options': 'nosniff',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'; sandbox",
  'Referrer-Policy': 'no-referrer',
  // Web clients on other origins show these images; cross-origin isolated pages need this to.
  'Cross-Origin-Resource-Policy': 'cross-origin',
};

const ALLOW = 'GET, HEAD, PUT, OPTIONS';

/** Types a browser may show in place: raster images, audio and video. Everything else downloads. */
function inlineType(type: string): boolean {
  const t = mediaTypeEssence(type);
  return /^image\/(png|jpeg|gif|webp|avif|bmp)$/.test(t) || t.startsWith('audio/') || t.startsWith('video/');
}

/** RFC 6266 with an RFC 8187 UTF-8 name and an ASCII fallback for old agents. */
export function contentDisposition(type: string, name: string): string {
  const fallback = name.replace(/[^\x20-\x7e]|["\\%]/g, '_');
  const encoded = encodeURIComponent(name).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return `${inlineType(type) ? 'inline' : 'attachment'}; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

function reply(res: ServerResponse, status: number, text: string, headers: OutgoingHttpHeaders = {}, close = false): void {
  const body = Buffer.from(text ? `${text}\n` : '', 'utf8');
  res.writeHead(status, {
    ...CORS,
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(body.length),
    'X-Content-Type-Options': 'nosniff',
    'Cache-Control': 'no-store',
    // A body left unread must not be parsed as the next request: close instead of draining it.
    ...(close ? { Connection: 'close' } : {}),
    ...headers,
  });
  res.end(body);
}

type Route = { kind: 'file' | 'thumb'; id: string };

function route(path: string): Route | undefined {
  const parts = path.split('/');
  if (parts.length !== 3 || parts[0] !== '') return undefined;
  if (parts[1] === 'thumb') {
    const m = /^([A-Za-z0-9_-]{24})\.png$/.exec(parts[2]!);
    return m ? { kind: 'thumb', id: m[1]! } : undefined;
  }
  return SLOT_ID_RE.test(parts[1]!) && parts[2] !== '' ? { kind: 'file', id: parts[1]! } : undefined;
}

export type ByteRange = { start: number; end: number };

/**
 * RFC 9110 §14.2 for one range: 'bytes=0-99', 'bytes=100-', 'bytes=-100'. Returns the range,
 * 'unsatisfiable' (416), or undefined to ignore the header and send everything (malformed or
 * several ranges: a multipart answer is not worth it for chat media).
 */
export function parseRange(header: string, size: number): ByteRange | 'unsatisfiable' | undefined {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (m[2] !== '' && Number(m[2]) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/** If-None-Match (RFC 9110 §13.1.2): weak comparison over a list or '*'. */
function noneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}

interface Body {
  size: number;
  type: string;
  etag: string;
  disposition?: string;
  open(range: ByteRange | undefined): Promise<Readable>;
}

async function serve(req: IncomingMessage, res: ServerResponse, body: Body, file: StoredFile): Promise<void> {
  const maxAge = file.expires === undefined ? 31_536_000 : Math.max(0, Math.floor((file.expires - Date.now()) / 1000));
  const headers: OutgoingHttpHeaders = {
    ...CORS,
    ...FILE_SECURITY,
    'Content-Type': body.type,
    ETag: body.etag,
    'Last-Modified': new Date(file.ts).toUTCString(),
    // Content behind a slot id never changes; it only disappears when it expires.
    'Cache-Control': `public, max-age=${maxAge}, immutable`,
    'Accept-Ranges': 'bytes',
  };
  if (body.disposition) headers['Content-Disposition'] = body.disposition;
  if (noneMatch(req.headers['if-none-match'], body.etag)) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  let range: ByteRange | 'unsatisfiable' | undefined;
  const ifRange = req.headers['if-range'] as string | undefined;
  // If-Range with another validator means the client's partial copy is stale: send it all.
  if (req.headers.range !== undefined && (ifRange === undefined || ifRange.trim() === body.etag)) {
    range = parseRange(req.headers.range, body.size);
  }
  if (range === 'unsatisfiable') {
    reply(res, 416, 'range not satisfiable', { 'Content-Range': `bytes */${body.size}` });
    return;
  }
  const status = range ? 206 : 200;
  headers['Content-Length'] = String(range ? range.end - range.start + 1 : body.size);
  if (range) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${body.size}`;
  if (req.method === 'HEAD') {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const stream = await body.open(range);
  res.writeHead(status, headers);
  try {
    await pipeline(stream, res);
  } catch {
    // The client went away mid-download; nothing left to tell it.
    res.destroy();
  }
}

async function get(req: IncomingMessage, res: ServerResponse, svc: UploadService, r: Route): Promise<void> {
  const file = await svc.file(r.id);
  if (!file) {
    reply(res, 404, 'no such file (it may have expired)');
    return;
  }
  if (r.kind === 'thumb') {
    const image = file.blob.image;
    if (!image) {
      reply(res, 404, 'this file has no thumbnail');
      return;
    }
    const png = Buffer.from(image.thumb, 'base64');
    await serve(req, res, {
      size: png.length,
      type: 'image/png',
      etag: `"${file.file.hash}-thumb"`,
      open: async (range) => Readable.from([range ? png.subarray(range.start, range.end + 1) : png]),
    }, file);
    return;
  }
  // Opened before anything is sent: a blob that is gone gives a clean 404, not a cut response.
  let handle;
  try {
    handle = await open(svc.blobs.path(file.file.hash), 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    reply(res, 404, 'no such file (it may have expired)');
    return;
  }
  let streaming = false;
  try {
    const { size } = await handle.stat();
    if (size !== file.file.size) throw new Error(`blob ${file.file.hash} has ${size} bytes, its record ${file.file.size}`);
    await serve(req, res, {
      size,
      type: file.file.type,
      etag: `"${file.file.hash}"`,
      disposition: contentDisposition(file.file.type, file.file.name),
      open: async (range) => {
        streaming = true;
        return handle.createReadStream(range ? { start: range.start, end: range.end } : {});
      },
    }, file);
  } finally {
    // The read stream closes the handle itself when it ends.
    if (!streaming) await handle.close();
  }
}

async function put(req: IncomingMessage, res: ServerResponse, svc: UploadService, r: Route, url: URL): Promise<void> {
  const expiresText = url.searchParams.get('e') ?? '';
  const token = url.searchParams.get('t') ?? '';
  const expires = /^\d{1,12}$/.test(expiresText) ? Number(expiresText) : NaN;
  // Checked first: an expired slot's record is gone, and the client deserves the real reason.
  if (expires * 1000 <= Date.now()) {
    reply(res, 403, 'the upload slot has expired; request a new one', {}, true);
    return;
  }
  const found = Number.isNaN(expires) ? undefined : await svc.slotState(r.id);
  if (!found || !svc.verifyToken({ slotId: r.id, size: found.slot.size, type: found.slot.type, expires }, token)) {
    reply(res, 403, 'invalid upload token', {}, true);
    return;
  }
  if (found.state === 'done' || !svc.beginPut(r.id)) {
    reply(res, 409, 'this slot has already been used', {}, true);
    return;
  }
  try {
    const slot = found.slot;
    // XEP-0363 §5: the Content-Length must match the slot. Checked before reading anything.
    const declaredLength = req.headers['content-length'];
    if (declaredLength !== undefined) {
      const length = Number(declaredLength);
      if (length > slot.size) {
        reply(res, 413, `the slot is for ${slot.size} bytes`, {}, true);
        return;
      }
      if (length < slot.size) {
        reply(res, 400, `the slot is for ${slot.size} bytes, Content-Length says ${length}`, {}, true);
        return;
      }
    }
    // §5: a declared Content-Type must match too (clients always send the one they declared).
    const given = req.headers['content-type'];
    if (slot.type !== '' && (given === undefined || mediaTypeEssence(given) !== mediaTypeEssence(slot.type))) {
      reply(res, 415, `the slot is for ${slot.type}`, {}, true);
      return;
    }
    // Without a declared type, the one sent now is kept if it is well-formed (§5 allows
    // application/octet-stream when the client said nothing at all).
    const type = slot.type !== '' ? slot.type : given !== undefined && isValidMediaType(given.trim()) ? given.trim() : DEFAULT_TYPE;
    const body = await svc.blobs.receive(req, slot.size);
    if (!body.ok) {
      reply(res, body.status, body.reason, {}, true);
      return;
    }
    if (!(await svc.finish(r.id, slot, type, body))) {
      reply(res, 409, 'this slot has already been used');
      return;
    }
    reply(res, 201, '');
  } finally {
    svc.endPut(r.id);
  }
}

export function uploadHttpHandler(svc: UploadService): HttpHandler {
  return async (req, res, ctx) => {
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...CORS, Allow: ALLOW, 'Content-Length': '0' });
      res.end();
      return;
    }
    const r = route(ctx.path);
    if (!r) {
      reply(res, 404, 'not found', {}, !req.complete);
      return;
    }
    switch (req.method) {
      case 'GET':
      case 'HEAD':
        return get(req, res, svc, r);
      case 'PUT':
        if (r.kind !== 'file') {
          reply(res, 405, 'method not allowed', { Allow: 'GET, HEAD, OPTIONS' }, true);
          return;
        }
        return put(req, res, svc, r, ctx.url);
      default:
        reply(res, 405, 'method not allowed', { Allow: ALLOW }, !req.complete);
    }
  };
}
