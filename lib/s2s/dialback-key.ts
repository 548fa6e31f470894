// Dialback keys (XEP-0185): HMAC-SHA256 keyed with the hex SHA-256 of a secret only this server
// knows, over "receiving originating stream-id". Only the authoritative server (us) ever checks
// a key we made, so nothing has to be shared with other servers, and no key needs storing.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { StorageDriver } from '../storage/types.js';

export function dialbackKey(secret: string, receiving: string, originating: string, streamId: string): string {
  const keyOfSecret = createHash('sha256').update(secret).digest('hex');
  return createHmac('sha256', keyOfSecret).update(`${receiving} ${originating} ${streamId}`).digest('hex');
}

/** Compares in constant time, so the answer's timing tells nothing about the right key. */
export function dialbackKeyValid(secret: string, receiving: string, originating: string, streamId: string, key: string): boolean {
  const expected = Buffer.from(dialbackKey(secret, receiving, originating, streamId));
  const given = Buffer.from(key.trim());
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * The configured secret, or one generated once and kept in the store: a secret that changed at a
 * restart would make the peers' pending verifications of keys we sent before it fail.
 */
export async function loadDialbackSecret(storage: StorageDriver, configured: string | undefined): Promise<string> {
  if (configured !== undefined) return configured;
  const store = storage.map<string>('server');
  await store.add('server', 'dialback-secret', randomBytes(32).toString('hex'));
  return (await store.get('server', 'dialback-secret'))!;
}
