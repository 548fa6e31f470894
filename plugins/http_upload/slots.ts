// Slot ids, PUT tokens, and the checks on what a client declares in a slot request (file name,
// content type). Pure functions: no storage, no I/O.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** 18 random bytes: 144 bits, above the 128 that make a GET URL impossible to guess. */
const SLOT_ID_BYTES = 18;
/** base64url of SLOT_ID_BYTES bytes, without padding. */
export const SLOT_ID_RE = /^[A-Za-z0-9_-]{24}$/;

export function newSlotId(): string {
  return randomBytes(SLOT_ID_BYTES).toString('base64url');
}

/** What the token binds: a token for one slot cannot be replayed with another size, type or expiry. */
export interface TokenFields {
  slotId: string;
  size: number;
  /** The declared content type, '' when the request declared none. */
  type: string;
  /** Seconds since the epoch. */
  expires: number;
}

function mac(key: Buffer, f: TokenFields): Buffer {
  // Newlines cannot occur in any field (ids are base64url, types are checked tokens), so the
  // encoding is unambiguous.
  return createHmac('sha256', key).update(`${f.slotId}\n${f.size}\n${f.type}\n${f.expires}`).digest();
}

export function signToken(key: Buffer, f: TokenFields): string {
  return mac(key, f).toString('base64url');
}

export function verifyToken(key: Buffer, f: TokenFields, token: string): boolean {
  if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return false;
  const given = Buffer.from(token, 'base64url');
  const expected = mac(key, f);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * Makes a client's file name safe to show in URLs and Content-Disposition: the last path
 * component only, no control or reserved characters, no leading dots, at most `maxBytes` of
 * UTF-8 (keeping the extension, which clients use to pick a viewer). It is never used as a path:
 * blobs are named by their hash.
 */
export function sanitizeFilename(raw: string, maxBytes: number): string {
  let name = raw.normalize('NFC');
  name = name.slice(Math.max(name.lastIndexOf('/'), name.lastIndexOf('\\')) + 1);
  // Controls (C0, DEL, C1), bidi overrides (they make 'gpj.exe' read as 'exe.jpg') and the
  // characters Windows reserves.
  name = name.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069<>:"|?*]/g, '_');
  name = name.trim().replace(/^\.+/, '').trim();
  if (Buffer.byteLength(name) > maxBytes) {
    const dot = name.lastIndexOf('.');
    let ext = dot > 0 && name.length - dot <= 16 ? name.slice(dot) : '';
    if (Buffer.byteLength(ext) > maxBytes / 2) ext = '';
    // Whole code points only, in one pass: names can be as long as a stanza allows.
    let stem = '';
    let bytes = Buffer.byteLength(ext);
    for (const ch of name.slice(0, name.length - ext.length)) {
      bytes += Buffer.byteLength(ch);
      if (bytes > maxBytes) break;
      stem += ch;
    }
    name = stem.trim() + ext;
  }
  return name === '' || name.startsWith('.') ? `file${name}` : name;
}

// RFC 9110 §8.3.1 media-type = type "/" subtype parameters; tokens only, so no header injection.
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const MEDIA_TYPE_RE = new RegExp(`^${TOKEN}/${TOKEN}(?:[ \\t]*;[ \\t]*${TOKEN}=(?:${TOKEN}|"[^"\\\\\\r\\n]*"))*$`);
const MAX_TYPE_LENGTH = 255;

export function isValidMediaType(value: string): boolean {
  return value.length <= MAX_TYPE_LENGTH && MEDIA_TYPE_RE.test(value);
}

/** The type/subtype part, lower-cased, for comparisons ('image/PNG; x=1' -> 'image/png'). */
export function mediaTypeEssence(value: string): string {
  return value.split(';', 1)[0]!.trim().toLowerCase();
}
