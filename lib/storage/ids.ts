// Item ids for archives (MAM stanza-ids, offline spool, upload slots).
// A fixed-width base36 millisecond prefix keeps ids roughly time-ordered when compared as strings
// (lowercase base36 digits sort the same in ASCII as numerically), which helps indexes and makes
// ids readable in logs. The 96 random bits after it make ids unguessable: a MAM id is handed to
// clients, and knowing one must not let anyone predict another user's ids.
import { randomFillSync } from 'node:crypto';

/** 36^9 ms is about 3,300 years from the epoch, so the prefix never needs a tenth digit. */
const TIME_WIDTH = 9;
const RANDOM_BYTES = 12;

/**
 * Random bytes are drawn from the CSPRNG a pool at a time: one call per id cost a measurable share
 * of storing a message (every message gets one or two ids). Each byte is handed out once.
 */
const POOL_IDS = 256;
const pool = Buffer.alloc(RANDOM_BYTES * POOL_IDS);
let poolOffset = pool.length;

function randomPart(): string {
  if (poolOffset === pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const part = pool.toString('base64url', poolOffset, poolOffset + RANDOM_BYTES);
  poolOffset += RANDOM_BYTES;
  return part;
}

/** A new unique, URL-safe id: 9 base36 time characters followed by 16 base64url random ones. */
export function newId(now: number = Date.now()): string {
  const time = Math.max(0, Math.floor(now)).toString(36).padStart(TIME_WIDTH, '0');
  return time + randomPart();
}

/** The creation time encoded in an id made by newId, or undefined for a foreign id. */
export function idTime(id: string): number | undefined {
  if (id.length !== TIME_WIDTH + 16 || !/^[0-9a-z]{9}[A-Za-z0-9_-]{16}$/.test(id)) return undefined;
  return parseInt(id.slice(0, TIME_WIDTH), 36);
}
