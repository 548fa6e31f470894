// `parleyctl import PATH`: accounts and rosters from a XEP-0227 (PIEFXIS) export, as ejabberd
// and Prosody write them.
//
// Two passes over the input. The first reads everything and checks it (well-formed, no DOCTYPE,
// hosts served here, valid user names, passwords and SCRAM credentials) and counts the users,
// writing nothing: a bad export is refused whole, with the file and position of its first
// problem, instead of being half imported. The second pass imports, in batches.
//
// Credentials: SCRAM credentials in the export (XEP-0227 <scram-credentials>, or ejabberd's
// `password='scram:…'`) are stored as they are. A plaintext password is turned into SCRAM
// credentials for every hash family the server keeps, with the server's iteration count; the
// password itself is never stored. PBKDF2 is costly by design, so derivations run in parallel on
// libuv's thread pool, as many at once as the machine has cores: more would not be faster, and
// while the running server does the import, the pool's other threads stay free for logins.
//
// Existing accounts are updated, not refused: their credentials are replaced by the export's
// (the export is taken to be the newer truth, as when a migration is re-run), other fields of
// the account are kept. An export user without any credentials keeps the existing ones; a new
// one is created without credentials and cannot log in until `parleyctl passwd` sets a password.
// Roster items from the export replace the items of the same contacts and leave other contacts
// alone; the roster version changes so that clients fetch the roster again.
import { availableParallelism } from 'node:os';
import type { AccountRecord } from '../accounts.js';
import type { Accounts } from '../accounts.js';
import { deriveScramCredential, type ScramCredential, type ScramHash } from '../sasl/scram.js';
import type { Json, StorageDriver } from '../storage/types.js';
import { RosterStore } from '../../plugins/roster/store.js';
import type { ContactState } from '../../plugins/roster/api.js';
import { readPiefxis, type PieUser, type SkipCounts } from './import-piefxis.js';

export { ImportError } from './import-piefxis.js';

/** The map store accounts live in (owner = host, key = localpart); see bootstrap.ts. */
const ACCOUNTS_STORE = 'accounts';
/** Users handled per batch: large enough to keep every core busy, small enough to report progress often. */
const BATCH = 128;

export interface ImportProgress {
  done: number;
  total: number;
}

export interface ImportOptions {
  accounts: Accounts;
  storage: StorageDriver;
  hosts: readonly string[];
  /** Called after each batch, and once with done = 0 when the total is known. */
  onProgress?(p: ImportProgress): void;
  /** Derivations at once; defaults to the number of cores. */
  parallelism?: number;
}

export interface ImportSummary {
  users: number;
  created: number;
  updated: number;
  hosts: string[];
  /** Users whose roster was imported, and the contacts and requests written. */
  rosters: number;
  contacts: number;
  requests: number;
  /** New accounts without any credential. */
  withoutCredentials: number;
  skipped: SkipCounts;
  seconds: number;
}

/** Runs `fn` over `items` with at most `limit` calls pending. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

export async function importPiefxis(input: string, o: ImportOptions): Promise<ImportSummary> {
  const started = Date.now();
  const hosts = [...o.hosts];

  // Pass 1: check everything, write nothing.
  let total = 0;
  for await (const _user of readPiefxis(input, { hosts })) total++;
  o.onProgress?.({ done: 0, total });

  // Pass 2: import.
  const skipped: SkipCounts = new Map();
  const summary: ImportSummary = {
    users: 0, created: 0, updated: 0, hosts: [], rosters: 0, contacts: 0, requests: 0, withoutCredentials: 0, skipped, seconds: 0,
  };
  const seenHosts = new Set<string>();
  const accounts = o.storage.map<AccountRecord>(ACCOUNTS_STORE);
  const rosters = new RosterStore(o.storage.map<Json>('roster'), o.storage.keyval<Json>('roster_version'));
  const parallelism = Math.max(1, o.parallelism ?? availableParallelism());

  const flush = async (batch: PieUser[]): Promise<void> => {
    const derived = await deriveAll(batch, o.accounts, parallelism);
    // One batched lookup per host tells new accounts from existing ones.
    const existing = new Map<string, Map<string, AccountRecord>>();
    for (const host of new Set(batch.map((u) => u.host))) {
      existing.set(host, await accounts.getMany(host, [...new Set(batch.filter((u) => u.host === host).map((u) => u.name))]));
    }
    for (const [i, user] of batch.entries()) {
      try {
        await store(user, derived[i], existing.get(user.host)!);
      } catch (err) {
        // The export was fine (pass 1), so this is the storage failing: say how far it got, so
        // the administrator knows that running the import again is what completes it.
        throw new Error(`${user.where}: storing ${user.name}@${user.host} failed after ${plural(summary.users, 'user')} were imported `
          + `(running the import again completes it): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
    }
  };

  /** Writes one user; `known` holds the host's accounts looked up for this batch (and updated here). */
  const store = async (user: PieUser, fromPassword: Partial<Record<ScramHash, ScramCredential>> | undefined,
    known: Map<string, AccountRecord>): Promise<void> => {
    seenHosts.add(user.host);
    const scram = fromPassword ?? user.scram;
    const hasCredentials = Object.keys(scram).length > 0;
    const before = known.get(user.name);
    if (before) {
      // Credentials replace the old set whole: a family the export lacks must not keep
      // accepting the previous password.
      const record: AccountRecord = hasCredentials ? { ...before, scram } : before;
      await accounts.set(user.host, user.name, record);
      known.set(user.name, record);
      summary.updated++;
    } else {
      const record: AccountRecord = { scram, created: Date.now() };
      if (await accounts.add(user.host, user.name, record)) {
        summary.created++;
        if (!hasCredentials) summary.withoutCredentials++;
      } else {
        // Registered meanwhile (a live server), or the same user twice in the export.
        const current = (await accounts.get(user.host, user.name)) ?? record;
        await accounts.set(user.host, user.name, hasCredentials ? { ...current, scram } : current);
        summary.updated++;
      }
      known.set(user.name, record);
    }
    summary.users++;
    await importRoster(user, rosters, summary);
  };

  let batch: PieUser[] = [];
  for await (const user of readPiefxis(input, { hosts, skipped })) {
    batch.push(user);
    if (batch.length >= BATCH) {
      await flush(batch);
      batch = [];
      o.onProgress?.({ done: summary.users, total: Math.max(total, summary.users) });
    }
  }
  if (batch.length > 0) await flush(batch);
  o.onProgress?.({ done: summary.users, total: Math.max(total, summary.users) });
  summary.hosts = [...seenHosts].sort();
  summary.seconds = (Date.now() - started) / 1000;
  return summary;
}

/**
 * SCRAM credentials for the users of a batch that have a plaintext password (undefined for the
 * others), for every hash family the server keeps.
 */
async function deriveAll(batch: PieUser[], accounts: Accounts, parallelism: number):
Promise<Array<Partial<Record<ScramHash, ScramCredential>> | undefined>> {
  const jobs: Array<{ index: number; hash: ScramHash; password: string }> = [];
  batch.forEach((u, index) => {
    if (u.password !== undefined) for (const hash of accounts.hashes) jobs.push({ index, hash, password: u.password });
  });
  const results = await mapLimit(jobs, parallelism, (j) => deriveScramCredential(j.password, j.hash, accounts.iterations));
  const out: Array<Partial<Record<ScramHash, ScramCredential>> | undefined> = batch.map(() => undefined);
  jobs.forEach((j, k) => {
    (out[j.index] ??= {})[j.hash] = results[k]!;
  });
  return out;
}

async function importRoster(user: PieUser, rosters: RosterStore, summary: ImportSummary): Promise<void> {
  if (user.roster === undefined && user.pendingIn.length === 0) return;
  const owner = `${user.name}@${user.host}`;
  await rosters.lock.run(owner, async () => {
    const states = new Map<string, ContactState>();
    for (const item of user.roster ?? []) {
      const state: ContactState = { item: { ...item, groups: [...item.groups] } };
      states.set(item.jid, state);
    }
    for (const { contact, stanza } of user.pendingIn) {
      const state = states.get(contact) ?? (await rosters.get(owner, contact));
      // A contact that is already subscribed to the user has nothing left to ask.
      const sub = state.item?.subscription;
      if (sub === 'from' || sub === 'both') continue;
      states.set(contact, { ...state, pendingIn: stanza });
      summary.requests++;
    }
    for (const [contact, state] of states) await rosters.put(owner, contact, state);
    summary.contacts += user.roster?.length ?? 0;
    if (user.roster !== undefined) summary.rosters++;
    // A new version, so that clients holding a cached roster fetch the imported one.
    await rosters.bump(owner);
  });
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** The report: the summary line first, then one line per notice. */
export function formatSummary(s: ImportSummary): string {
  const lines = [
    `imported ${plural(s.users, 'user')} (${s.created} new, ${s.updated} updated) on ${plural(s.hosts.length, 'host')} in ${s.seconds.toFixed(1)} s`,
  ];
  if (s.rosters > 0 || s.requests > 0) {
    lines.push(`rosters: ${plural(s.rosters, 'user')}, ${plural(s.contacts, 'contact')}, ${plural(s.requests, 'pending subscription request')}`);
  }
  if (s.withoutCredentials > 0) {
    lines.push(`warning: ${plural(s.withoutCredentials, 'new user has', 'new users have')} no password or SCRAM credentials and cannot log in until 'parleyctl passwd' sets one`);
  }
  if (s.skipped.size > 0) {
    const parts = [...s.skipped.entries()].sort((a, b) => b[1] - a[1]).map(([what, n]) => `${what}: ${n}`);
    lines.push(`warning: not imported: ${parts.join(', ')}`);
  }
  return lines.join('\n');
}
