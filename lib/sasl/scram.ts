// SCRAM (RFC 5802, RFC 7677): credential derivation and the server side of the exchange.
// The server only ever holds StoredKey and ServerKey, so a leaked credential store does not give
// out passwords, and it can still prove itself to the client (server-final `v=`).
import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import saslprepLib from '@mongodb-js/saslprep';
import type { ChannelBinding, SaslBackend, SaslRefusal, SaslResult, SaslSession } from './index.js';

export type ScramHash = 'SHA-1' | 'SHA-256' | 'SHA-512';

/** What is stored per account and hash family; base64 strings so the record stays JSON. */
export type ScramCredential = { salt: string; iterations: number; storedKey: string; serverKey: string };

/** RFC 7677 §4: the iteration count SHOULD be at least 4096. */
export const MIN_SCRAM_ITERATIONS = 4096;
export const DEFAULT_SCRAM_ITERATIONS = 4096;
/** Matches the salt size of real credentials, so fake salts for unknown users look the same. */
const SALT_BYTES = 16;
/** RFC 5802 leaves the server nonce length open; 24 random bytes (≥ 18 as required here). */
const SERVER_NONCE_BYTES = 24;

const DIGEST: Record<ScramHash, { name: string; length: number }> = {
  'SHA-1': { name: 'sha1', length: 20 },
  'SHA-256': { name: 'sha256', length: 32 },
  'SHA-512': { name: 'sha512', length: 64 },
};

export class SaslPrepError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SaslPrepError';
  }
}

/**
 * SASLprep (RFC 4013) with the stored-strings rules (unassigned code points refused) for both
 * registration and login: a string that could never have been stored cannot match anyway.
 */
export function saslprep(s: string): string {
  try {
    return saslprepLib(s);
  } catch (err) {
    throw new SaslPrepError(err instanceof Error ? err.message : 'prohibited input');
  }
}

const pbkdf2Async = promisify(pbkdf2);

/** Hi() of RFC 5802 §2.2 is PBKDF2 with HMAC; run on the thread pool so logins don't stall the loop. */
export function saltedPassword(password: string, salt: Buffer, iterations: number, hash: ScramHash): Promise<Buffer> {
  const { name, length } = DIGEST[hash];
  return pbkdf2Async(Buffer.from(password, 'utf8'), salt, iterations, length, name);
}

function hmac(hash: ScramHash, key: Buffer, data: string | Buffer): Buffer {
  return createHmac(DIGEST[hash].name, key).update(data).digest();
}

function digest(hash: ScramHash, data: Buffer): Buffer {
  return createHash(DIGEST[hash].name).update(data).digest();
}

/** StoredKey and ServerKey from a SaltedPassword (RFC 5802 §3). */
export function scramKeys(salted: Buffer, hash: ScramHash): { storedKey: Buffer; serverKey: Buffer } {
  const clientKey = hmac(hash, salted, 'Client Key');
  return { storedKey: digest(hash, clientKey), serverKey: hmac(hash, salted, 'Server Key') };
}

export function scramHashLength(hash: ScramHash): number {
  return DIGEST[hash].length;
}

export async function deriveScramCredential(password: string, hash: ScramHash, iterations: number, salt?: Buffer): Promise<ScramCredential> {
  if (!Number.isSafeInteger(iterations) || iterations < 1) throw new RangeError(`invalid iteration count ${iterations}`);
  const prepared = saslprep(password);
  const saltBytes = salt ?? randomBytes(SALT_BYTES);
  const { storedKey, serverKey } = scramKeys(await saltedPassword(prepared, saltBytes, iterations, hash), hash);
  return {
    salt: saltBytes.toString('base64'),
    iterations,
    storedKey: storedKey.toString('base64'),
    serverKey: serverKey.toString('base64'),
  };
}

// ---------- message syntax (RFC 5802 §7) ----------

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes strict UTF-8; undefined when the bytes are not UTF-8. */
export function decodeUtf8(data: Buffer): string | undefined {
  try {
    return utf8.decode(data);
  } catch {
    return undefined;
  }
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
// printable = %x21-2B / %x2D-7E: printable ASCII without the comma.
const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/;
const CB_NAME = /^[A-Za-z0-9.-]+$/;
const EXTENSION = /^[A-Za-z]=[^\0]+$/u;

function decodeBase64(s: string): Buffer | undefined {
  return s.length > 0 && BASE64.test(s) ? Buffer.from(s, 'base64') : undefined;
}

/** saslname: `=2C` and `=3D` stand for `,` and `=`; any other `=` (and NUL) is malformed. */
function decodeSaslname(s: string): string | undefined {
  if (s.length === 0 || s.includes('\0') || s.includes(',')) return undefined;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]!;
    if (ch !== '=') {
      out += ch;
      continue;
    }
    const code = s.slice(i + 1, i + 3);
    if (code === '2C') out += ',';
    else if (code === '3D') out += '=';
    else return undefined;
    i += 2;
  }
  return out;
}

class Fail {
  constructor(readonly condition: Extract<SaslResult, { kind: 'failure' }>['condition'], readonly text?: string) {}
}

function isReservedExtension(attr: string): boolean {
  // RFC 5802 §5.1: `m` is reserved for mandatory extensions, which this version cannot understand.
  return attr.startsWith('m=');
}

function checkExtensions(attrs: readonly string[]): void {
  for (const attr of attrs) {
    if (isReservedExtension(attr)) throw new Fail('malformed-request', 'unsupported mandatory extension');
    if (!EXTENSION.test(attr)) throw new Fail('malformed-request', 'malformed attribute');
  }
}

interface ClientFirst {
  gs2Header: string;
  cbFlag: 'n' | 'y' | 'p';
  cbName?: string;
  authzid?: string;
  username: string;
  clientNonce: string;
  bare: string;
}

function parseClientFirst(text: string): ClientFirst {
  const first = text.indexOf(',');
  const second = first === -1 ? -1 : text.indexOf(',', first + 1);
  if (second === -1) throw new Fail('malformed-request', 'missing GS2 header');
  const flag = text.slice(0, first);
  const authzPart = text.slice(first + 1, second);
  let cbFlag: ClientFirst['cbFlag'];
  let cbName: string | undefined;
  if (flag === 'n' || flag === 'y') cbFlag = flag;
  else if (flag.startsWith('p=') && CB_NAME.test(flag.slice(2))) {
    cbFlag = 'p';
    cbName = flag.slice(2);
  } else throw new Fail('malformed-request', 'bad channel binding flag');
  let authzid: string | undefined;
  if (authzPart !== '') {
    authzid = authzPart.startsWith('a=') ? decodeSaslname(authzPart.slice(2)) : undefined;
    if (authzid === undefined) throw new Fail('malformed-request', 'bad authzid');
  }
  const bare = text.slice(second + 1);
  const attrs = bare.split(',');
  if (attrs.some(isReservedExtension)) throw new Fail('malformed-request', 'unsupported mandatory extension');
  const [user, nonce, ...extensions] = attrs;
  const username = user?.startsWith('n=') ? decodeSaslname(user.slice(2)) : undefined;
  if (username === undefined) throw new Fail('malformed-request', 'bad or missing username');
  if (!nonce?.startsWith('r=') || !PRINTABLE.test(nonce.slice(2))) throw new Fail('malformed-request', 'bad or missing nonce');
  // Unknown extensions are ignored, as RFC 5802 requires of everything but `m`.
  checkExtensions(extensions);
  return { gs2Header: text.slice(0, second + 1), cbFlag, cbName, authzid, username, clientNonce: nonce.slice(2), bare };
}

interface ClientFinal {
  cbind: Buffer;
  nonce: string;
  proof: Buffer;
  withoutProof: string;
}

function parseClientFinal(text: string): ClientFinal {
  const attrs = text.split(',');
  if (attrs.length < 3) throw new Fail('malformed-request', 'missing attributes');
  const [c, r] = attrs as [string, string];
  const p = attrs[attrs.length - 1]!;
  const cbind = c.startsWith('c=') ? decodeBase64(c.slice(2)) : undefined;
  if (!cbind) throw new Fail('malformed-request', 'bad or missing channel binding');
  if (!r.startsWith('r=') || !PRINTABLE.test(r.slice(2))) throw new Fail('malformed-request', 'bad or missing nonce');
  const proof = p.startsWith('p=') ? decodeBase64(p.slice(2)) : undefined;
  if (!proof) throw new Fail('malformed-request', 'bad or missing proof');
  checkExtensions(attrs.slice(2, -1));
  return { cbind, nonce: r.slice(2), proof, withoutProof: attrs.slice(0, -1).join(',') };
}

// ---------- the server session ----------

export interface ScramSessionOptions {
  hash: ScramHash;
  /** True for the -PLUS variant: the client must then bind to the channel (`p=`). */
  plus: boolean;
  backend: SaslBackend;
  /** Server secret: keys the fake salt of unknown users. */
  secret: Buffer;
  /** Iterations announced for unknown users; defaults to the backend's, then to 4096. */
  iterations?: number;
  /** The server part of the nonce (tests pin it); 24 random bytes in base64 by default. */
  nonce?: () => string;
  /** Given exactly when -PLUS mechanisms are offered on this connection. */
  channelBinding?: ChannelBinding;
  /** See SaslSessionOptions.gate. */
  gate?(username: string): SaslRefusal | undefined;
  /** See SaslSessionOptions.onBadCredentials. */
  onBadCredentials?(username: string): void;
}

interface Pending {
  first: ClientFirst;
  serverFirst: string;
  nonce: string;
  /** What `c=` must decode to: the GS2 header, then the channel binding data if any. */
  cbindInput: Buffer;
  credential: { storedKey: Buffer; serverKey: Buffer };
  known: boolean;
}

export class ScramSession implements SaslSession {
  private state: 'new' | 'await-first' | 'await-final' | 'done' = 'new';
  private pending: Pending | undefined;

  constructor(private readonly options: ScramSessionOptions) {}

  async start(initial: Buffer | undefined): Promise<SaslResult> {
    if (this.state !== 'new') return this.fail(new Fail('malformed-request', 'already started'));
    // SCRAM is client-first; without an initial response the client sends it after an empty
    // challenge (RFC 4422 §5, RFC 6120 §6.4.2).
    if (initial === undefined) {
      this.state = 'await-first';
      return { kind: 'challenge', data: Buffer.alloc(0) };
    }
    return this.run(() => this.clientFirst(initial));
  }

  async step(response: Buffer): Promise<SaslResult> {
    if (this.state === 'await-first') return this.run(() => this.clientFirst(response));
    if (this.state === 'await-final') return this.run(() => this.clientFinal(response));
    return this.fail(new Fail('malformed-request', this.state === 'new' ? 'not started' : 'authentication already finished'));
  }

  private async run(fn: () => Promise<SaslResult>): Promise<SaslResult> {
    try {
      const result = await fn();
      if (result.kind !== 'challenge') this.finish();
      return result;
    } catch (err) {
      if (err instanceof Fail) return this.fail(err);
      // A storage failure must not look like wrong credentials, and must not leak details.
      return this.fail(new Fail('temporary-auth-failure'));
    }
  }

  private finish(): void {
    this.state = 'done';
    this.pending = undefined;
  }

  private fail(f: Fail): SaslResult {
    this.finish();
    return f.text === undefined ? { kind: 'failure', condition: f.condition } : { kind: 'failure', condition: f.condition, text: f.text };
  }

  private async clientFirst(data: Buffer): Promise<SaslResult> {
    const text = decodeUtf8(data);
    if (text === undefined) throw new Fail('malformed-request', 'not UTF-8');
    const first = parseClientFirst(text);
    const { hash, plus, channelBinding } = this.options;

    let cbData: Buffer = Buffer.alloc(0);
    if (first.cbFlag === 'p') {
      // RFC 5802 §6: binding is only negotiated through the -PLUS mechanism name.
      if (!plus) throw new Fail('malformed-request', 'channel binding requires a -PLUS mechanism');
      const bound = channelBinding?.data(first.cbName!);
      if (!bound) {
        const offered = channelBinding?.types?.join(', ');
        throw new Fail('malformed-request', `channel binding type ${first.cbName} is not supported${offered ? ` here (offered: ${offered})` : ''}`);
      }
      cbData = bound;
    } else if (plus) {
      throw new Fail('malformed-request', 'a -PLUS mechanism requires channel binding');
    } else if (first.cbFlag === 'y' && channelBinding) {
      // The client would have bound had it seen -PLUS offered: someone stripped it (RFC 5802 §6).
      // A client that can bind but knows none of the offered types says `n` (XEP-0440).
      throw new Fail('not-authorized', 'channel binding downgrade: -PLUS mechanisms were offered, but the client says it saw none');
    }

    let username: string;
    try {
      username = saslprep(first.username);
    } catch {
      throw new Fail('not-authorized');
    }
    if (username === '') throw new Fail('not-authorized');
    if (first.authzid !== undefined) {
      let authzid: string | undefined;
      try {
        authzid = saslprep(first.authzid);
      } catch {
        authzid = undefined;
      }
      if (authzid !== username) throw new Fail('invalid-authzid');
    }

    const refused = this.options.gate?.(username);
    if (refused) throw new Fail(refused.condition, refused.text);

    const backend = this.options.backend;
    const stored = await backend.scramCredential(username, hash);
    if (!stored) await this.checkFamily(username);
    const length = scramHashLength(hash);
    let salt: string;
    let iterations: number;
    let credential: Pending['credential'];
    let known = false;
    const storedKey = stored && Buffer.from(stored.storedKey, 'base64');
    const serverKey = stored && Buffer.from(stored.serverKey, 'base64');
    if (stored && storedKey!.length === length && serverKey!.length === length) {
      salt = stored.salt;
      iterations = stored.iterations;
      credential = { storedKey: storedKey!, serverKey: serverKey! };
      known = true;
    } else {
      // Unknown user: answer as if it existed. The salt is stable per name, so asking twice
      // gives the same answer, just as for a real account; the exchange fails at the end.
      salt = hmac('SHA-256', this.options.secret, `scram-fake-salt\0${hash}\0${username}`).subarray(0, SALT_BYTES).toString('base64');
      iterations = this.options.iterations ?? backend.iterations ?? DEFAULT_SCRAM_ITERATIONS;
      credential = { storedKey: randomBytes(length), serverKey: randomBytes(length) };
    }

    const serverNonce = this.options.nonce ? this.options.nonce() : randomBytes(SERVER_NONCE_BYTES).toString('base64');
    const nonce = first.clientNonce + serverNonce;
    const serverFirst = `r=${nonce},s=${salt},i=${iterations}`;
    this.pending = {
      first: { ...first, username },
      serverFirst,
      nonce,
      cbindInput: Buffer.concat([Buffer.from(first.gs2Header, 'utf8'), cbData]),
      credential,
      known,
    };
    this.state = 'await-final';
    return { kind: 'challenge', data: Buffer.from(serverFirst, 'utf8') };
  }

  /**
   * An account without credentials of this hash family (e.g. imported with SHA-1 only) cannot
   * complete the exchange. It fails at once with invalid-mechanism ("not supported for this
   * account") and a text naming what works; mechanism-too-weak would mean the opposite. This
   * tells that the account exists, a trade against a user stuck on a silent not-authorized.
   */
  private async checkFamily(username: string): Promise<void> {
    const families = await this.options.backend.scramHashes?.(username);
    if (!families || families.length === 0 || families.includes(this.options.hash)) return;
    const usable = families.map((h) => `SCRAM-${h}`).join(' or ');
    throw new Fail('invalid-mechanism',
      `this account has no SCRAM-${this.options.hash} credentials yet: use ${usable}, or log in once with PLAIN to add them`);
  }

  private async clientFinal(data: Buffer): Promise<SaslResult> {
    const pending = this.pending!;
    const text = decodeUtf8(data);
    if (text === undefined) throw new Fail('malformed-request', 'not UTF-8');
    const final = parseClientFinal(text);
    const header = pending.cbindInput.subarray(0, Buffer.byteLength(pending.first.gs2Header));
    if (!final.cbind.subarray(0, header.length).equals(header)) throw new Fail('malformed-request', 'channel binding header differs from the GS2 header');
    if (!final.cbind.equals(pending.cbindInput)) throw new Fail('not-authorized', 'channel binding data differs');
    if (final.nonce !== pending.nonce) throw new Fail('malformed-request', 'nonce mismatch');

    const { hash } = this.options;
    const authMessage = `${pending.first.bare},${pending.serverFirst},${final.withoutProof}`;
    const { storedKey, serverKey } = pending.credential;
    // The work is the same for unknown users and wrong passwords; only `known` differs.
    const signature = hmac(hash, storedKey, authMessage);
    let ok = false;
    if (final.proof.length === signature.length) {
      const clientKey = Buffer.alloc(signature.length);
      for (let i = 0; i < signature.length; i++) clientKey[i] = final.proof[i]! ^ signature[i]!;
      ok = timingSafeEqual(digest(hash, clientKey), storedKey);
    }
    if (!ok || !pending.known) {
      this.options.onBadCredentials?.(pending.first.username);
      throw new Fail('not-authorized');
    }
    const verifier = hmac(hash, serverKey, authMessage).toString('base64');
    return { kind: 'success', username: pending.first.username, data: Buffer.from(`v=${verifier}`, 'utf8') };
  }
}
