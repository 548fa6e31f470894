// Accounts: one map entry per user, owner = host, key = the prepared localpart. Only SCRAM
// credentials are kept (salt, iterations, StoredKey, ServerKey per hash family); the password
// itself is never stored or logged, and PLAIN is checked by deriving from the stored salt.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { prepLocal } from './jid.js';
import type { SaslBackend } from './sasl/index.js';
import {
  DEFAULT_SCRAM_ITERATIONS, MIN_SCRAM_ITERATIONS, deriveScramCredential, saltedPassword, saslprep, scramKeys,
  type ScramCredential, type ScramHash,
} from './sasl/scram.js';
import type { Json, MapStore } from './storage/types.js';

export type AccountErrorCode = 'exists' | 'not-found' | 'invalid-username' | 'invalid-password';

export class AccountError extends Error {
  readonly code: AccountErrorCode;
  constructor(code: AccountErrorCode, message: string) {
    super(message);
    this.name = 'AccountError';
    this.code = code;
  }
}

export interface AccountRecord {
  scram: Partial<Record<ScramHash, ScramCredential>>;
  /** Milliseconds since the epoch. */
  created: number;
  [key: string]: Json;
}

export interface AccountsOptions {
  /** PBKDF2 iterations for new credentials; at least 4096 (RFC 7677 §4). */
  iterations?: number;
  /** Hash families to keep credentials for; SHA-1, SHA-256 and SHA-512 by default. */
  hashes?: readonly ScramHash[];
  /** Server secret: keys the fake salts used for unknown users. */
  secret: Buffer;
}

// Strongest first: PLAIN verification needs only one derivation, so it uses the best one stored.
const PREFERENCE: readonly ScramHash[] = ['SHA-512', 'SHA-256', 'SHA-1'];

export class Accounts {
  readonly iterations: number;
  readonly hashes: readonly ScramHash[];
  private readonly secret: Buffer;
  /** The hash PLAIN checks of new accounts use; unknown users cost the same. */
  private readonly plainHash: ScramHash;

  constructor(private readonly store: MapStore<AccountRecord>, options: AccountsOptions) {
    const iterations = options.iterations ?? DEFAULT_SCRAM_ITERATIONS;
    if (!Number.isSafeInteger(iterations) || iterations < MIN_SCRAM_ITERATIONS) {
      throw new RangeError(`SCRAM iterations must be an integer of at least ${MIN_SCRAM_ITERATIONS}, got ${iterations}`);
    }
    const hashes = [...new Set<ScramHash>(options.hashes ?? ['SHA-1', 'SHA-256', 'SHA-512'])];
    if (hashes.length === 0) throw new RangeError('at least one SCRAM hash is needed');
    for (const h of hashes) if (!PREFERENCE.includes(h)) throw new RangeError(`unknown SCRAM hash ${String(h)}`);
    this.iterations = iterations;
    this.hashes = hashes;
    this.secret = options.secret;
    this.plainHash = PREFERENCE.find((h) => hashes.includes(h))!;
  }

  async register(user: string, host: string, password: string): Promise<void> {
    const local = this.username(user);
    this.checkPassword(password);
    // Cheap early answer before the costly derivation; `add` below is what makes it atomic.
    if (await this.store.get(host, local)) throw new AccountError('exists', 'account exists');
    const record: AccountRecord = { scram: await this.credentials(password), created: Date.now() };
    if (!(await this.store.add(host, local, record))) throw new AccountError('exists', 'account exists');
  }

  async setPassword(user: string, host: string, password: string): Promise<void> {
    const local = this.username(user);
    this.checkPassword(password);
    if (!(await this.store.get(host, local))) throw new AccountError('not-found', 'no such account');
    const scram = await this.credentials(password);
    // Read again after the slow derivation, so an account removed meanwhile is not brought back
    // and fields written meanwhile are kept.
    const current = await this.store.get(host, local);
    if (!current) throw new AccountError('not-found', 'no such account');
    await this.store.set(host, local, { ...current, scram });
  }

  async remove(user: string, host: string): Promise<void> {
    const local = this.username(user);
    if (!(await this.store.delete(host, local))) throw new AccountError('not-found', 'no such account');
  }

  async exists(user: string, host: string): Promise<boolean> {
    const local = tryPrepLocal(user);
    // Asked for every message to an offline user: the record (credentials) is not decoded for it.
    return local !== undefined && (await this.store.has(host, local));
  }

  async list(host: string): Promise<string[]> {
    return (await this.store.keys(host)).sort();
  }

  /**
   * Checks a password against the strongest stored credential. On success, families the account
   * lacks (e.g. imported with SCRAM-SHA-1 only) are derived from the password and stored: PLAIN
   * is the one login that reveals the password, so it is the moment to complete the record.
   */
  async verifyPassword(user: string, host: string, password: string): Promise<boolean> {
    const local = tryPrepLocal(user);
    const record = local === undefined ? undefined : await this.store.get(host, local);
    const hash = record ? PREFERENCE.find((h) => record.scram[h]) : undefined;
    const stored = hash ? record!.scram[hash] : undefined;
    let prepared: string | undefined;
    try {
      prepared = saslprep(password);
    } catch {
      prepared = undefined;
    }
    if (!stored || prepared === undefined) {
      // Spend the same PBKDF2 time as a real check, so the answer time does not tell whether the
      // account exists.
      const fakeSalt = createHmac('sha256', this.secret).update(`plain-fake-salt\0${local ?? user}`).digest().subarray(0, 16);
      await saltedPassword(prepared ?? password, fakeSalt, this.iterations, this.plainHash);
      return false;
    }
    const { storedKey, serverKey } = scramKeys(
      await saltedPassword(prepared, Buffer.from(stored.salt, 'base64'), stored.iterations, hash!),
      hash!,
    );
    const ok = constantTimeEqual(storedKey, Buffer.from(stored.storedKey, 'base64'))
      && constantTimeEqual(serverKey, Buffer.from(stored.serverKey, 'base64'));
    if (ok && this.hashes.some((h) => !record!.scram[h])) {
      // The login stands even when the upgrade cannot be written; the next one tries again.
      await this.addMissingCredentials(host, local!, prepared, hash!, stored).catch(() => undefined);
    }
    return ok;
  }

  /** The hash families an account has credentials for; undefined when there is no such account. */
  async scramHashes(user: string, host: string): Promise<ScramHash[] | undefined> {
    const local = tryPrepLocal(user);
    const record = local === undefined ? undefined : await this.store.get(host, local);
    return record ? PREFERENCE.filter((h) => record.scram[h]) : undefined;
  }

  private async addMissingCredentials(host: string, local: string, password: string, verified: ScramHash, credential: ScramCredential): Promise<void> {
    const before = await this.store.get(host, local);
    const missing = this.hashes.filter((h) => !before?.scram[h]);
    if (missing.length === 0) return;
    const derived = await Promise.all(missing.map((h) => deriveScramCredential(password, h, this.iterations)));
    // Read again after the slow derivation: a password changed or an account removed meanwhile
    // must win over credentials derived from the old password.
    const current = await this.store.get(host, local);
    if (!current || current.scram[verified]?.storedKey !== credential.storedKey) return;
    const scram = { ...current.scram };
    missing.forEach((h, i) => {
      scram[h] ??= derived[i]!;
    });
    await this.store.set(host, local, { ...current, scram });
  }

  saslBackend(host: string): SaslBackend {
    return {
      iterations: this.iterations,
      scramCredential: async (username, hash) => {
        const local = tryPrepLocal(username);
        if (local === undefined) return undefined;
        return (await this.store.get(host, local))?.scram[hash];
      },
      verifyPassword: (username, password) => this.verifyPassword(username, host, password),
      scramHashes: (username) => this.scramHashes(username, host),
    };
  }

  private username(user: string): string {
    const local = tryPrepLocal(user);
    if (local === undefined) throw new AccountError('invalid-username', 'invalid username');
    return local;
  }

  private checkPassword(password: string): void {
    let prepared: string;
    try {
      prepared = saslprep(password);
    } catch {
      throw new AccountError('invalid-password', 'password not allowed by SASLprep');
    }
    // A password that prepares to nothing (e.g. only soft hyphens) is as empty as ''.
    if (prepared === '') throw new AccountError('invalid-password', 'empty password');
  }

  private async credentials(password: string): Promise<Partial<Record<ScramHash, ScramCredential>>> {
    const derived = await Promise.all(this.hashes.map((h) => deriveScramCredential(password, h, this.iterations)));
    return Object.fromEntries(this.hashes.map((h, i) => [h, derived[i]!]));
  }
}

function tryPrepLocal(user: string): string | undefined {
  try {
    return prepLocal(user);
  } catch {
    return undefined;
  }
}

function constantTimeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
