// Verification PINs (DESIGN §5): 6 digits from a CSPRNG, valid for a limited time and a limited
// number of attempts. Only an HMAC of the PIN is stored (keyed by a secret kept in the store and
// bound to the number), so a copy of the database does not hand out valid PINs, and the PIN
// itself is never written anywhere but into the SMS. Pending PINs are keyed by number, not by
// session or installation: a client may ask on one connection and answer on another.
import { createHmac, randomBytes, randomInt, timingSafeEqual } from 'node:crypto';
import type { Json, MapStore } from '../../lib/storage/types.js';

interface PinRecord {
  [key: string]: Json;
  /** base64 HMAC-SHA-256 of number and PIN. */
  hash: string;
  /** Milliseconds since the epoch. */
  expires: number;
}

export type PinCheck =
  | { result: 'ok' }
  /** `left` = attempts that remain; 0 means this attempt used the last one and the PIN is gone. */
  | { result: 'wrong'; left: number }
  /** No PIN: never requested, expired, used or invalidated. */
  | { result: 'none' };

/** What `issue` replaced, so that a failed SMS can put it back. */
export interface IssuedPin {
  pin: string;
  previous: PinRecord | undefined;
}

export class PinStore {
  private constructor(
    private readonly store: MapStore<Json>,
    private readonly owner: string,
    private readonly secret: Buffer,
    private readonly lifetimeMs: number,
    private readonly maxAttempts: number,
  ) {}

  static async open(store: MapStore<Json>, secrets: MapStore<string>, owner: string, lifetimeMs: number, maxAttempts: number): Promise<PinStore> {
    // Created once and kept: PINs issued before a restart must still verify after it.
    await secrets.add(owner, 'pin-hmac', randomBytes(32).toString('base64'));
    const secret = Buffer.from((await secrets.get(owner, 'pin-hmac'))!, 'base64');
    return new PinStore(store, owner, secret, lifetimeMs, maxAttempts);
  }

  private hash(number: string, pin: string): Buffer {
    return createHmac('sha256', this.secret).update(`${number}\0${pin}`).digest();
  }

  private async record(number: string): Promise<PinRecord | undefined> {
    const value = await this.store.get(this.owner, `pin/${number}`);
    if (!value || typeof value !== 'object' || Array.isArray(value)) return undefined;
    const rec = value as PinRecord;
    return typeof rec.hash === 'string' && typeof rec.expires === 'number' && rec.expires > Date.now() ? rec : undefined;
  }

  async pending(number: string): Promise<boolean> {
    return (await this.record(number)) !== undefined;
  }

  /** Creates a new PIN for the number, replacing a pending one, with a fresh set of attempts. */
  async issue(number: string): Promise<IssuedPin> {
    const pin = randomInt(0, 1_000_000).toString().padStart(6, '0');
    const previous = await this.record(number);
    const rec: PinRecord = { hash: this.hash(number, pin).toString('base64'), expires: Date.now() + this.lifetimeMs };
    await this.store.set(this.owner, `pin/${number}`, rec, { ttlMs: this.lifetimeMs });
    await this.store.delete(this.owner, `tries/${number}`);
    return { pin, previous };
  }

  /** Undoes `issue` (the SMS did not go out): the previous PIN, if any, is pending again. */
  async revoke(number: string, issued: IssuedPin): Promise<void> {
    const ttl = issued.previous ? issued.previous.expires - Date.now() : 0;
    if (issued.previous && ttl > 0) await this.store.set(this.owner, `pin/${number}`, issued.previous, { ttlMs: ttl });
    else await this.store.delete(this.owner, `pin/${number}`);
  }

  /**
   * Checks a PIN; every check counts as an attempt. The attempt that uses up the last one
   * invalidates the PIN whatever it says, so guessing stops there. A right PIN stays pending
   * until `consume`, so that it can be used again when what it was for failed.
   */
  async check(number: string, pin: string): Promise<PinCheck> {
    const rec = await this.record(number);
    if (!rec) return { result: 'none' };
    // Atomic, so parallel guesses cannot share one attempt.
    const tries = await this.store.increment(this.owner, `tries/${number}`, 1, { ttlMs: Math.max(1, rec.expires - Date.now()) });
    if (tries > this.maxAttempts) {
      await this.consume(number);
      return { result: 'none' };
    }
    const expected = Buffer.from(rec.hash, 'base64');
    const given = this.hash(number, pin);
    if (expected.length === given.length && timingSafeEqual(expected, given)) return { result: 'ok' };
    const left = this.maxAttempts - tries;
    if (left <= 0) await this.consume(number);
    return { result: 'wrong', left };
  }

  async consume(number: string): Promise<void> {
    await this.store.delete(this.owner, `pin/${number}`);
    await this.store.delete(this.owner, `tries/${number}`);
  }
}
