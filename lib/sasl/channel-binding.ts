// Channel binding data of a TLS connection for the SCRAM -PLUS mechanisms (RFC 5056, RFC 5802).
// Two types are supported:
// - tls-exporter (RFC 9266): keying material exported from the TLS session. Only on TLS 1.3:
//   on TLS 1.2 it is safe only with the extended master secret, which Node cannot tell us.
// - tls-server-end-point (RFC 5929): a hash of our certificate. It works on every TLS version and
//   through TLS-terminating setups, and XEP-0440 makes it the one every client should know.
// tls-unique is never offered: it is undefined on TLS 1.3 and unsafe on TLS 1.2 without the
// extended master secret (the triple handshake attack). It is still *accepted* when a client
// insists on it: OpenSSL-based clients (Python's ssl, hence slixmpp) compute it from the first
// Finished message even on TLS 1.3, as ejabberd and Prosody accept. Refusing it would make such
// clients fall back to `y` and fail as a downgrade, i.e. not log in at all; accepting it still
// binds the authentication to this TLS connection.
import { createHash } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { ChannelBinding } from './index.js';

export type ChannelBindingType = 'tls-exporter' | 'tls-server-end-point';

/** RFC 9266 §2: the exporter label; 32 bytes, empty context. */
const EXPORTER_LABEL = 'EXPORTER-Channel-Binding';
const EXPORTER_LENGTH = 32;

// Signature algorithms that use exactly one hash function (RFC 5929 §4.1), by OID.
const SIGNATURE_HASH: Readonly<Record<string, string>> = {
  '1.2.840.113549.1.1.4': 'md5', // md5WithRSAEncryption
  '1.2.840.113549.1.1.5': 'sha1', // sha1WithRSAEncryption
  '1.2.840.113549.1.1.14': 'sha224',
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.1': 'sha1', // ecdsa-with-SHA1
  '1.2.840.10045.4.3.1': 'sha224',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
  '1.2.840.10040.4.3': 'sha1', // dsa-with-sha1
  '2.16.840.1.101.3.4.3.1': 'sha224', // dsa-with-sha224
  '2.16.840.1.101.3.4.3.2': 'sha256',
};
const RSASSA_PSS = '1.2.840.113549.1.1.10';
const HASH_ALGORITHM: Readonly<Record<string, string>> = {
  '1.3.14.3.2.26': 'sha1',
  '2.16.840.1.101.3.4.2.4': 'sha224',
  '2.16.840.1.101.3.4.2.1': 'sha256',
  '2.16.840.1.101.3.4.2.2': 'sha384',
  '2.16.840.1.101.3.4.2.3': 'sha512',
};

interface Tlv {
  tag: number;
  /** Offset of the contents. */
  start: number;
  /** Offset just past the contents. */
  end: number;
}

/** One DER tag-length-value at `pos`; throws on anything truncated or not DER. */
function readTlv(der: Buffer, pos: number, limit = der.length): Tlv {
  if (pos + 2 > limit) throw new RangeError('truncated DER');
  const tag = der[pos]!;
  let len = der[pos + 1]!;
  let start = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > limit) throw new RangeError('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i]!;
    start += n;
  }
  if (start + len > limit) throw new RangeError('truncated DER');
  return { tag, start, end: start + len };
}

function readOid(der: Buffer, tlv: Tlv): string {
  if (tlv.tag !== 0x06 || tlv.end <= tlv.start) throw new RangeError('OID expected');
  const ids: number[] = [];
  let value = 0;
  for (let i = tlv.start; i < tlv.end; i++) {
    value = value * 128 + (der[i]! & 0x7f);
    if (!(der[i]! & 0x80)) {
      ids.push(value);
      value = 0;
    }
  }
  // The first subidentifier packs the first two arcs: 40 * x + y, with x at most 2.
  const first = ids.shift() ?? 0;
  const x = Math.min(2, Math.floor(first / 40));
  return [x, first - 40 * x, ...ids].join('.');
}

/**
 * The hash tls-server-end-point uses for a DER certificate (RFC 5929 §4.1): SHA-256 when the
 * certificate is signed with MD5 or SHA-1, else the signature's own hash. Undefined when the
 * signature uses no single hash (Ed25519, Ed448) or cannot be read: the type is then not offered.
 */
export function serverEndPointHash(der: Buffer): string | undefined {
  try {
    const cert = readTlv(der, 0);
    if (cert.tag !== 0x30) return undefined;
    const tbs = readTlv(der, cert.start, cert.end);
    const algorithm = readTlv(der, tbs.end, cert.end);
    if (algorithm.tag !== 0x30) return undefined;
    const oidTlv = readTlv(der, algorithm.start, algorithm.end);
    const oid = readOid(der, oidTlv);
    let hash: string | undefined = SIGNATURE_HASH[oid];
    if (oid === RSASSA_PSS) hash = pssHash(der, oidTlv.end, algorithm.end);
    if (!hash) return undefined;
    return hash === 'md5' || hash === 'sha1' ? 'sha256' : hash;
  } catch {
    return undefined;
  }
}

/** RSASSA-PSS names its hash in the parameters: `[0] hashAlgorithm`, SHA-1 when absent (RFC 4055). */
function pssHash(der: Buffer, pos: number, end: number): string | undefined {
  if (pos >= end) return 'sha1';
  const params = readTlv(der, pos, end);
  if (params.tag !== 0x30) return undefined;
  if (params.start === params.end) return 'sha1';
  const first = readTlv(der, params.start, params.end);
  if (first.tag !== 0xa0) return 'sha1';
  const hashAlg = readTlv(der, first.start, first.end);
  return HASH_ALGORITHM[readOid(der, readTlv(der, hashAlg.start, hashAlg.end))];
}

// The digest depends on the certificate only, so it is computed once per certificate, not per
// connection. Keyed by the certificate's own fingerprint; few certificates exist, so a small cap
// that empties the cache when reached is enough to bound it across certificate reloads.
const endPointCache = new Map<string, Buffer | null>();
const END_POINT_CACHE_MAX = 64;

function serverEndPoint(socket: TLSSocket): Buffer | undefined {
  const cert = socket.getCertificate();
  if (!cert || !('raw' in cert) || !cert.raw) return undefined;
  const key = cert.fingerprint256;
  let digest = endPointCache.get(key);
  if (digest === undefined) {
    const hash = serverEndPointHash(cert.raw);
    digest = hash ? createHash(hash).update(cert.raw).digest() : null;
    if (endPointCache.size >= END_POINT_CACHE_MAX) endPointCache.clear();
    endPointCache.set(key, digest);
  }
  return digest ?? undefined;
}

/**
 * RFC 5929 §3.1: the first Finished message of the latest handshake — the client's in a full
 * handshake, the server's in a resumed one.
 */
function tlsUnique(socket: TLSSocket): Buffer | undefined {
  return (socket.isSessionReused() ? socket.getFinished() : socket.getPeerFinished()) ?? undefined;
}

/**
 * The channel binding a TLS connection offers, among the wanted types (in their order), or
 * undefined when none is available. What is offered depends only on the TLS version and the
 * certificate, never on the user: a client that pins its mechanism (Conversations) sees the same
 * offer on every login to the same listener and host.
 */
export function tlsChannelBinding(socket: TLSSocket, wanted: readonly ChannelBindingType[]): ChannelBinding | undefined {
  const types: ChannelBindingType[] = [];
  let endPoint: Buffer | undefined;
  for (const type of wanted) {
    if (type === 'tls-exporter' && socket.getProtocol() === 'TLSv1.3') types.push(type);
    if (type === 'tls-server-end-point') {
      endPoint = serverEndPoint(socket);
      if (endPoint) types.push(type);
    }
  }
  if (types.length === 0) return undefined;
  let exporter: Buffer | undefined;
  return {
    types,
    data(type: string): Buffer | undefined {
      if (type === 'tls-unique') return tlsUnique(socket);
      if (!(types as string[]).includes(type)) return undefined;
      if (type === 'tls-server-end-point') return endPoint;
      exporter ??= socket.exportKeyingMaterial(EXPORTER_LENGTH, EXPORTER_LABEL, Buffer.alloc(0));
      return exporter;
    },
  };
}
