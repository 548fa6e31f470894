// The XEP-0114 handshake: the component proves it knows the shared secret by sending the
// lowercase hex SHA-1 of the stream id (chosen fresh by the server for each stream, so an old
// handshake cannot be replayed) followed by the secret.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A fresh, unguessable stream id. */
export function newStreamId(): string {
  return randomBytes(16).toString('hex');
}

export function handshakeDigest(streamId: string, secret: string): string {
  return createHash('sha1').update(streamId + secret, 'utf8').digest('hex');
}

/**
 * Whether `received` is the right digest. Hex is compared case-insensitively (the digits are the
 * same number); the comparison takes the same time wherever the first difference is, so the
 * secret's digest cannot be found byte by byte from response times.
 */
export function verifyHandshake(received: string, streamId: string, secret: string): boolean {
  const expected = Buffer.from(handshakeDigest(streamId, secret), 'latin1');
  const given = Buffer.from(received.trim().toLowerCase(), 'utf8');
  // The length of a SHA-1 digest is public; only its content is compared in constant time.
  return given.length === expected.length && timingSafeEqual(given, expected);
}
