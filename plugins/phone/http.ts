// The Quicksy-compatible registration API (DESIGN §5), as QuicksyServer serves it, so that a
// Quicksy client built against our domain works unchanged:
//   GET  /authentication/{e164}  Installation-Id, Accept-Language, User-Agent: Name/x.y.z
//        -> 200 SMS sent | 400 | 403 old client | 409 in use | 429 + Retry-After | 500 SMS failed
//   POST /password  Authorization: base64("\0" e164 "\0" pin), body = the new password
//        -> 201 created | 200 changed | 400 | 401 wrong PIN | 404 no PIN | 409 | 429 | 500
// Statuses are the whole answer (the client reads nothing else); bodies are short texts for
// people trying it with curl.
import type http from 'node:http';
import { isIP } from 'node:net';
import { HttpError, readBody, sendText, type HttpHandler, type HttpRequestContext } from '../../lib/net/http.js';
import type { PhoneOptions } from './options.js';
import type { PhoneService } from './service.js';
import { primaryLanguage } from './api.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PIN = /^\d{6}$/;

type Version = [number, number, number];

function parseVersion(v: string): Version | undefined {
  // A semver core, possibly followed by a pre-release or build suffix (Quicksy sends e.g. 2.10.0+free).
  const m = /^(\d+)\.(\d+)\.(\d+)(?:[-+.][0-9A-Za-z.+-]*)?$/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

function older(a: Version, b: Version): boolean {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! < b[i]!;
  return false;
}

/** The client's address: the socket's, or X-Real-IP when the socket is a trusted proxy. */
export function clientAddress(req: http.IncomingMessage, trusted: ReadonlySet<string>): string {
  const plain = (a: string | undefined) => (a?.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a ?? '');
  const remote = plain(req.socket.remoteAddress);
  const real = req.headers['x-real-ip'];
  if (trusted.has(remote) && typeof real === 'string' && isIP(real.trim()) !== 0) return plain(real.trim());
  return remote;
}

function retryAfter(res: http.ServerResponse, ms: number, what: string): void {
  const seconds = Math.max(1, Math.ceil(ms / 1000));
  sendText(res, 429, `too many ${what}; retry in ${seconds} s`, { 'Retry-After': String(seconds) });
}

/** Decodes the Authorization header: base64 of NUL number NUL pin, the leading NUL optional. */
function credentials(header: string | undefined): { number: string; pin: string } | undefined {
  const value = header?.trim() ?? '';
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value)) return undefined;
  const parts = Buffer.from(value, 'base64').toString('utf8').split('\0');
  if (parts[0] === '') parts.shift();
  if (parts.length !== 2) return undefined;
  return { number: parts[0]!, pin: parts[1]! };
}

export function phoneHttpHandler(svc: PhoneService, o: PhoneOptions): HttpHandler {
  const trusted = new Set(o.trusted_proxies);
  const minVersion = parseVersion(o.min_client_version)!;
  const names = new Set(o.client_names);

  /** QuicksyServer refuses clients it cannot identify as well as outdated ones. */
  function clientAllowed(req: http.IncomingMessage): boolean {
    const ua = req.headers['user-agent'] ?? '';
    const slash = ua.indexOf('/');
    if (slash <= 0) return false;
    const name = ua.slice(0, slash);
    const version = parseVersion(ua.slice(slash + 1).split(' ')[0]!);
    return version !== undefined && !older(version, minVersion) && (names.size === 0 || names.has(name));
  }

  async function authentication(req: http.IncomingMessage, res: http.ServerResponse, raw: string): Promise<void> {
    const ip = clientAddress(req, trusted);
    const wait = await svc.throttleAddress(ip);
    if (wait !== undefined) return retryAfter(res, wait, 'requests from your address');
    const installation = req.headers['installation-id'];
    if (typeof installation !== 'string' || !UUID.test(installation.trim())) {
      return sendText(res, 400, 'missing or malformed Installation-Id (a UUID)');
    }
    let input: string;
    try {
      input = decodeURIComponent(raw);
    } catch {
      return sendText(res, 400, 'malformed phone number');
    }
    // QuicksyServer takes the number with or without its '+'.
    const check = svc.checkNumber(/^\d/.test(input) ? `+${input}` : input);
    if (!check.ok) return sendText(res, 400, check.text);
    const language = req.headers['accept-language'];
    const result = await svc.requestPin(check.number, {
      ip,
      installation: installation.trim().toLowerCase(),
      language: primaryLanguage(typeof language === 'string' ? language : undefined),
    });
    switch (result.status) {
      case 'sent':
        return sendText(res, 200, 'PIN sent by SMS');
      case 'throttled':
        return retryAfter(res, result.retryAfterMs, result.scope === 'number' ? 'SMS to this number' : 'SMS for this installation');
      case 'in-use':
        return sendText(res, 409, 'this number is logged in on another device');
      case 'failed':
        return sendText(res, 500, 'the SMS could not be sent');
    }
  }

  async function password(req: http.IncomingMessage, res: http.ServerResponse, ctx: HttpRequestContext): Promise<void> {
    const wait = await svc.throttlePasswordAddress(clientAddress(req, trusted));
    if (wait !== undefined) return retryAfter(res, wait, 'requests from your address');
    const creds = credentials(req.headers.authorization);
    if (!creds) return sendText(res, 400, 'missing or malformed Authorization: base64 of NUL number NUL PIN');
    const body = await readBody(req, ctx.maxBodySize);
    let pw: string;
    try {
      pw = new TextDecoder('utf-8', { fatal: true }).decode(body);
    } catch {
      return sendText(res, 400, 'the password must be UTF-8');
    }
    if (pw === '') return sendText(res, 400, 'the body must be the new password');
    const check = svc.checkNumber(/^\d/.test(creds.number) ? `+${creds.number}` : creds.number);
    if (!check.ok) return sendText(res, 400, check.text);
    if (!PIN.test(creds.pin)) return sendText(res, 400, 'the PIN has 6 digits');
    const result = await svc.redeem(check.number, creds.pin, pw);
    switch (result.status) {
      case 'created':
        return sendText(res, 201, 'account created');
      case 'changed':
        return sendText(res, 200, 'password changed');
      case 'wrong-pin':
        return sendText(res, 401, result.left > 0 ? `wrong PIN; ${result.left} attempt(s) left` : 'wrong PIN; ask for a new one');
      case 'no-pin':
        return sendText(res, 404, 'no PIN pending for this number (expired, used or never sent)');
      case 'in-use':
        return sendText(res, 409, 'this number is logged in on another device');
      case 'invalid-password':
        return sendText(res, 400, result.text);
    }
  }

  return async (req, res, ctx) => {
    const method = req.method ?? 'GET';
    if (ctx.path === '/') {
      if (method !== 'GET' && method !== 'HEAD') return sendText(res, 405, 'method not allowed', { Allow: 'GET, HEAD' });
      return sendText(res, 200, 'Parley phone registration API');
    }
    const auth = /^\/authentication\/([^/]+)$/.exec(ctx.path);
    if (!auth && ctx.path !== '/password') throw new HttpError(404, 'not found');
    const allowed = auth ? 'GET' : 'POST';
    if (method !== allowed) return sendText(res, 405, 'method not allowed', { Allow: allowed });
    if (!clientAllowed(req)) return sendText(res, 403, 'client outdated or not recognised (User-Agent: Name/x.y.z)');
    if (auth) return authentication(req, res, auth[1]!);
    return password(req, res, ctx);
  };
}
