// Throttling of failed logins, per client address and per account.
//
// Each limit is a token bucket: `failures` tokens that refill evenly over `window`. A failed login
// takes a token; with none left, attempts are refused (temporary-auth-failure) before any
// credential is looked at, so a guesser cannot make the server spend PBKDF2 time either. After a
// burst, one more attempt becomes possible every window/failures: the limit slows guessing down
// without locking anyone out for good.
//
// An attacker who keeps an account's bucket empty would still lock its owner out, so an address
// that logged in to an account successfully is trusted for that account for `trustFor`: it skips
// the account's bucket (never the per-address one). A success also refills the account's bucket,
// since it proves the owner is there.
//
// The counters live in this process's memory: they are lost on restart and not shared between
// processes. That bounds guessing per process, which is what matters for a single server; several
// nodes would need a shared store with TTLs (the map store can hold them), at a round trip per
// login. Memory is bounded by `maxEntries` per table: the least recently touched entries go first.
import { isIPv4, isIPv6 } from 'node:net';

export interface ThrottleSettings {
  ipFailures: number;
  ipWindowMs: number;
  accountFailures: number;
  accountWindowMs: number;
  /** How long a successful login trusts its address for that account; 0 = never. */
  trustForMs: number;
  maxEntries: number;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date. */
  at: number;
}

/** Token buckets by key, bounded in number. Map order doubles as recency order (LRU). */
class BucketTable {
  private readonly buckets = new Map<string, Bucket>();
  private ops = 0;

  constructor(private readonly now: () => number) {}

  get size(): number {
    return this.buckets.size;
  }

  private level(b: Bucket, capacity: number, windowMs: number, now: number): number {
    return Math.min(capacity, b.tokens + ((now - b.at) * capacity) / windowMs);
  }

  /** Milliseconds until the next attempt is allowed; 0 when it is allowed now. */
  wait(key: string, capacity: number, windowMs: number): number {
    const b = this.buckets.get(key);
    if (!b) return 0;
    const tokens = this.level(b, capacity, windowMs, this.now());
    return tokens >= 1 ? 0 : Math.ceil(((1 - tokens) * windowMs) / capacity);
  }

  take(key: string, capacity: number, windowMs: number, maxEntries: number): void {
    const now = this.now();
    const b = this.buckets.get(key);
    const tokens = b ? this.level(b, capacity, windowMs, now) : capacity;
    this.buckets.delete(key);
    this.buckets.set(key, { tokens: Math.max(0, tokens - 1), at: now });
    this.maintain(capacity, windowMs, maxEntries);
  }

  delete(key: string): void {
    this.buckets.delete(key);
  }

  private maintain(capacity: number, windowMs: number, maxEntries: number): void {
    // A full bucket is the same as none: drop them now and then, and whenever over the cap.
    if (++this.ops % 1024 !== 0 && this.buckets.size <= maxEntries) return;
    const now = this.now();
    for (const [key, b] of this.buckets) {
      if (this.level(b, capacity, windowMs, now) >= capacity) this.buckets.delete(key);
    }
    for (const key of this.buckets.keys()) {
      if (this.buckets.size <= maxEntries) break;
      this.buckets.delete(key);
    }
  }
}

/** Entries that expire, bounded in number. */
class ExpiringSet {
  private readonly until = new Map<string, number>();

  constructor(private readonly now: () => number) {}

  get size(): number {
    return this.until.size;
  }

  has(key: string): boolean {
    const t = this.until.get(key);
    if (t === undefined) return false;
    if (t > this.now()) return true;
    this.until.delete(key);
    return false;
  }

  add(key: string, ttlMs: number, maxEntries: number): void {
    const now = this.now();
    this.until.delete(key);
    this.until.set(key, now + ttlMs);
    if (this.until.size <= maxEntries) return;
    for (const [k, t] of this.until) if (t <= now) this.until.delete(k);
    for (const k of this.until.keys()) {
      if (this.until.size <= maxEntries) break;
      this.until.delete(k);
    }
  }
}

/**
 * The address a limit applies to. IPv4-mapped IPv6 addresses count as IPv4; other IPv6 addresses
 * count by their /64, since one subscriber usually holds a whole /64 and could otherwise rotate
 * addresses for free.
 */
export function addressKey(ip: string | undefined): string {
  if (!ip) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (isIPv4(ip)) return ip;
  if (!isIPv6(ip)) return ip;
  return `${ipv6Groups(ip).slice(0, 4).map((g) => g.toString(16)).join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (zone dropped, embedded IPv4 converted). */
function ipv6Groups(ip: string): number[] {
  let s = ip.split('%')[0]!;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(s);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    s = `${s.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = s.split('::');
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length > 1 && halves[1] ? halves[1].split(':') : [];
  const zeros = halves.length > 1 ? 8 - head.length - tail.length : 0;
  return [...head, ...Array<string>(zeros).fill('0'), ...tail].map((g) => parseInt(g, 16));
}

export type Refusal = { scope: 'address' | 'account'; retryAfterMs: number };

export class AuthThrottle {
  private readonly addresses: BucketTable;
  private readonly accounts: BucketTable;
  private readonly trusted: ExpiringSet;

  constructor(private readonly now: () => number = Date.now) {
    this.addresses = new BucketTable(now);
    this.accounts = new BucketTable(now);
    this.trusted = new ExpiringSet(now);
  }

  /** Entries held, for tests and stats. */
  get size(): { addresses: number; accounts: number; trusted: number } {
    return { addresses: this.addresses.size, accounts: this.accounts.size, trusted: this.trusted.size };
  }

  /** Whether a login from this address may be tried at all (checked before the mechanism runs). */
  checkAddress(ip: string | undefined, s: ThrottleSettings): Refusal | undefined {
    const wait = this.addresses.wait(addressKey(ip), s.ipFailures, s.ipWindowMs);
    return wait > 0 ? { scope: 'address', retryAfterMs: wait } : undefined;
  }

  /** Whether a login for this account may be tried from this address. */
  checkAccount(ip: string | undefined, account: string, s: ThrottleSettings): Refusal | undefined {
    const address = this.checkAddress(ip, s);
    if (address) return address;
    if (this.trusted.has(trustKey(account, ip))) return undefined;
    const wait = this.accounts.wait(account, s.accountFailures, s.accountWindowMs);
    return wait > 0 ? { scope: 'account', retryAfterMs: wait } : undefined;
  }

  /** A failed credential check: counts against the address and, when known, the account. */
  failed(ip: string | undefined, account: string | undefined, s: ThrottleSettings): void {
    this.addresses.take(addressKey(ip), s.ipFailures, s.ipWindowMs, s.maxEntries);
    if (account !== undefined && !this.trusted.has(trustKey(account, ip))) {
      this.accounts.take(account, s.accountFailures, s.accountWindowMs, s.maxEntries);
    }
  }

  /**
   * A successful login. The address's own failures stay counted: an attacker with one valid
   * account must not be able to wipe its guessing record by logging in to it.
   */
  succeeded(ip: string | undefined, account: string, s: ThrottleSettings): void {
    this.accounts.delete(account);
    if (s.trustForMs > 0) this.trusted.add(trustKey(account, ip), s.trustForMs, s.maxEntries);
  }
}

function trustKey(account: string, ip: string | undefined): string {
  return `${account}\n${addressKey(ip)}`;
}

/** "12 minutes", "40 seconds": for the text of a refusal. */
export function describeWait(ms: number): string {
  const s = Math.max(1, Math.ceil(ms / 1000));
  if (s < 120) return `${s} second${s === 1 ? '' : 's'}`;
  const m = Math.ceil(s / 60);
  if (m < 120) return `${m} minutes`;
  return `${Math.ceil(m / 60)} hours`;
}
