// Behaviour specific to the embedded driver, beyond the shared contract: file setup, WAL, the
// expiry purge, page caps, schema versioning and several handles on one file.
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import { createLogger } from '../../lib/log.js';
import { EmbeddedDriver, MAX_PAGE } from '../../lib/storage/embedded.js';
import { StorageError } from '../../lib/storage/types.js';

const dir = mkdtempSync(join(tmpdir(), 'parley-embedded-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const freshPath = (): string => join(dir, `case-${++n}`, 'sub', 'parley.db');

/** Rows physically in a table, expired or not, read through a separate connection. */
function rows(path: string, table: string): number {
  const raw = new Database(path, { readonly: true });
  try {
    return (raw.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  } finally {
    raw.close();
  }
}

t.test('creates parent directories and a WAL database that persists', async (t) => {
  const path = freshPath();
  const d = EmbeddedDriver.open({ path });
  t.equal(d.path, path);
  await d.keyval<string>('kv').set('alice@example.com', 'hello');
  await d.archive<number>('a').append('alice@example.com', { id: 'x', value: 1 });
  t.ok(existsSync(path), 'file created under new directories');
  t.ok(existsSync(`${path}-wal`), 'writes go through the write-ahead log');
  await d.close();
  const raw = new Database(path, { readonly: true });
  t.equal(raw.pragma('journal_mode', { simple: true }), 'wal', 'journal_mode is persisted as WAL');
  t.equal(raw.pragma('user_version', { simple: true }), 1, 'schema version recorded');
  t.equal(raw.pragma('integrity_check', { simple: true }), 'ok');
  raw.close();
  const again = EmbeddedDriver.open({ path });
  t.equal(await again.keyval<string>('kv').get('alice@example.com'), 'hello', 'data survives close/open');
  t.equal((await again.archive<number>('a').get('alice@example.com', 'x'))?.value, 1);
  await again.close();
});

t.test('refuses a database from a newer schema and files that are not databases', async (t) => {
  const path = freshPath();
  (await EmbeddedDriver.open({ path }).close());
  const raw = new Database(path);
  raw.pragma('user_version = 99');
  raw.close();
  t.throws(() => EmbeddedDriver.open({ path }), { name: 'StorageError', code: 'invalid', message: /schema version 99/ });
  t.throws(() => EmbeddedDriver.open({ path: dir }), { name: 'StorageError', code: 'io' }, 'a directory');
});

t.test('expired entries are purged from disk by the timer', async (t) => {
  const path = freshPath();
  const d = EmbeddedDriver.open({ path, purgeIntervalMs: 25 });
  t.teardown(() => d.close());
  await d.keyval<string>('kv').set('a@example.com', 'v', { ttlMs: 5 });
  await d.keyval<string>('kv').set('b@example.com', 'v');
  await d.map<number>('m').set('a@example.com', 'k', 1, { ttlMs: 5 });
  await d.map<number>('m').increment('a@example.com', 'c', 1, { ttlMs: 5 });
  await d.map<number>('m').set('a@example.com', 'keep', 1);
  await d.archive<number>('a').append('a@example.com', { value: 1 }, { ttlMs: 5 });
  await d.archive<number>('a').append('a@example.com', { value: 2 });
  t.equal(rows(path, 'kv_items'), 2);
  t.equal(rows(path, 'map_items'), 3);
  t.equal(rows(path, 'archive_items'), 2);
  await sleep(120);
  t.equal(rows(path, 'kv_items'), 1, 'keyval purged');
  t.equal(rows(path, 'map_items'), 1, 'map purged');
  t.equal(rows(path, 'archive_items'), 1, 'archive purged');
  t.equal(await d.map<number>('m').get('a@example.com', 'keep'), 1, 'live entries stay');
});

t.test('the purge skips a round instead of waiting while another process writes', async (t) => {
  const path = freshPath();
  const lines: string[] = [];
  const log = createLogger({ level: 'debug', format: 'json', write: (l) => lines.push(l) });
  const d = EmbeddedDriver.open({ path, purgeIntervalMs: 20, log });
  t.teardown(() => d.close());
  await d.keyval<string>('kv').set('a@example.com', 'v', { ttlMs: 1 });
  const other = new Database(path);
  other.exec('BEGIN IMMEDIATE');
  const started = Date.now();
  await sleep(100);
  t.ok(Date.now() - started < 3000, 'the event loop was never held for the busy timeout (5 s)');
  t.ok(lines.some((l) => /"level":"debug".*purging expired/.test(l)), 'the skipped round is logged at debug');
  t.equal(rows(path, 'kv_items'), 1, 'nothing purged while locked');
  other.exec('COMMIT');
  other.close();
  await sleep(100);
  t.equal(rows(path, 'kv_items'), 0, 'purged once the lock is free');
  t.notOk(lines.some((l) => /"level":"warn"/.test(l)), 'no warnings');
});

t.test('reads never take the write lock: they answer while another process holds it', async (t) => {
  const path = freshPath();
  const d = EmbeddedDriver.open({ path });
  t.teardown(() => d.close());
  const m = d.map<number>('m');
  await m.set('a@example.com', 'k', 1);
  await d.keyval<number>('kv').set('a@example.com', 2);
  await d.archive<number>('a').append('a@example.com', { id: 'x', value: 3 });
  const other = new Database(path);
  t.teardown(() => other.close());
  other.exec('BEGIN IMMEDIATE');
  t.same(await m.keys('a@example.com'), ['k']);
  t.same(await m.entries('a@example.com'), [['k', 1]]);
  t.equal(await m.get('a@example.com', 'k'), 1);
  t.equal(await d.keyval<number>('kv').get('a@example.com'), 2);
  t.equal((await d.archive<number>('a').query('a@example.com')).items.length, 1);
  t.equal(await d.archive<number>('a').count('a@example.com'), 1);
  other.exec('COMMIT');
});

t.test('purgeExpired works through a backlog in batches', async (t) => {
  const d = EmbeddedDriver.open({ path: ':memory:', purgeIntervalMs: 0 });
  t.teardown(() => d.close());
  const m = d.map<number>('pins');
  for (let i = 0; i < 1200; i++) await m.set('host.example.com', `k${i}`, i, { ttlMs: 1 });
  await m.set('host.example.com', 'live', 1, { ttlMs: 60_000 });
  await sleep(10);
  t.equal(await d.purgeExpired(1), 500, 'one batch');
  t.equal(await d.purgeExpired(), 700, 'the rest');
  t.equal(await d.purgeExpired(), 0, 'nothing left');
  t.same(await m.keys('host.example.com'), ['live']);
});

t.test('the timer does not keep the process alive', async (t) => {
  const d = EmbeddedDriver.open({ path: ':memory:', purgeIntervalMs: 10 });
  t.teardown(() => d.close());
  const timer = (d as unknown as { timer: NodeJS.Timeout }).timer;
  t.equal(timer.hasRef(), false, 'unref\'d');
  await d.close();
  t.equal((d as unknown as { timer?: NodeJS.Timeout }).timer, undefined, 'cleared on close');
});

/** Size of the database file itself: what checkpoints copied there from the WAL. */
const mainFileSize = (path: string): number => statSync(path).size;

t.test('a worker thread checkpoints the WAL into the database file', async (t) => {
  const write = async (path: string, checkpointIntervalMs: number): Promise<EmbeddedDriver> => {
    const d = EmbeddedDriver.open({ path, checkpointIntervalMs, purgeIntervalMs: 0 });
    const a = d.archive<string>('a');
    // Issued together, so one commit of about 100 pages: far below the 1000 at which SQLite
    // itself would checkpoint.
    await Promise.all(Array.from({ length: 200 }, () => a.append('o@example.com', { value: 'x'.repeat(2000) })));
    return d;
  };
  const inline = freshPath();
  const control = await write(inline, 0);
  await sleep(200);
  t.ok(mainFileSize(inline) < 100_000, 'without the thread the data stays in the WAL for now');
  await control.close();

  const path = freshPath();
  const d = await write(path, 10);
  t.teardown(() => d.close());
  const deadline = Date.now() + 10_000;
  while (mainFileSize(path) < 400_000 && Date.now() < deadline) await sleep(20);
  t.ok(mainFileSize(path) >= 400_000, 'the committed pages reached the database file');
  t.equal((await d.archive<string>('a').count('o@example.com')), 200, 'and all of them are readable');
  await d.close();
  t.notOk(existsSync(`${path}-wal`), 'closing stopped the thread first, so the last close removed the WAL');
});

t.test('close commits the writes still waiting for their commit', async (t) => {
  const path = freshPath();
  const d = EmbeddedDriver.open({ path });
  const pending = d.map<number>('m').set('a@example.com', 'k', 7);
  await d.close();
  await pending;
  t.pass('the write resolved');
  const again = EmbeddedDriver.open({ path });
  t.teardown(() => again.close());
  t.equal(await again.map<number>('m').get('a@example.com', 'k'), 7, 'and it is on disk');
});

/**
 * A driver on a fresh file (already written once, so it exists), and a count of the rows of
 * a@example.com in `table` as a second, read-only connection sees them: what is committed.
 */
async function observed(t: Test, table: string, options: { commitBatch?: number } = {}): Promise<{ d: EmbeddedDriver; read: () => unknown }> {
  const path = freshPath();
  const d = EmbeddedDriver.open({ path, ...options });
  t.teardown(() => d.close());
  await d.keyval<string>('kv').set('warm@example.com', 'up');
  const other = new Database(path, { readonly: true });
  t.teardown(() => other.close());
  return { d, read: () => other.prepare(`SELECT count(*) AS n FROM ${table} WHERE owner = 'a@example.com'`).get() };
}

t.test('another connection sees a write only once it is reported done', async (t) => {
  const { d, read } = await observed(t, 'kv_items');
  const pending = d.keyval<string>('kv').set('a@example.com', 'v');
  t.same(read(), { n: 0 }, 'not committed while its promise is pending');
  await pending;
  t.same(read(), { n: 1 }, 'committed when it resolves');
});

t.test('a map delete, too, is reported done only once committed', async (t) => {
  const { d, read } = await observed(t, 'map_items');
  const m = d.map<number>('m');
  await m.set('a@example.com', 'k', 1);
  const pending = m.delete('a@example.com', 'k');
  t.same(read(), { n: 1 }, 'still there for another connection while its promise is pending');
  t.equal(await pending, true);
  t.same(read(), { n: 0 }, 'gone when it resolves');
});

t.test('a write given `durable` resolves once applied and hands over its commit', async (t) => {
  const { d, read } = await observed(t, 'archive_items');
  const commits: Array<Promise<void>> = [];
  const durable = (commit: Promise<void>) => { commits.push(commit); };
  const archive = d.archive<string>('a');
  t.equal(await archive.append('a@example.com', { id: 'one', value: 'x' }, { durable }), 'one');
  await d.map<number>('m').set('a@example.com', 'k', 1, { durable });
  t.equal(commits.length, 2, 'each write hands over its commit');
  t.same(read(), { n: 0 }, 'resolved before its commit: another connection does not see it yet');
  t.equal((await archive.get('a@example.com', 'one'))?.value, 'x', 'this connection reads it at once');
  await t.rejects(archive.append('a@example.com', { id: 'one', value: 'y' }, { durable }),
    { code: 'conflict' }, 'a conflict is still reported by the call itself');
  t.equal(commits.length, 2, 'and hands over no commit');
  await Promise.all(commits);
  t.same(read(), { n: 1 }, 'committed when the handed-over promise resolves');
});

t.test('a batch that reaches commitBatch writes commits before the event-loop turn ends', async (t) => {
  const { d, read } = await observed(t, 'map_items', { commitBatch: 3 });
  const m = d.map<number>('m');
  let turnEnded = false;
  setImmediate(() => { turnEnded = true; });
  // Two writes: under the cap, so they wait for the end of the turn (the commit's setImmediate
  // was queued after the one above).
  await Promise.all([m.set('a@example.com', 'k1', 1), m.set('a@example.com', 'k2', 2)]);
  t.equal(turnEnded, true, 'under the cap, the commit waits for the end of the turn');
  t.same(read(), { n: 2 });

  turnEnded = false;
  setImmediate(() => { turnEnded = true; });
  // Four writes issued together: the third fills the batch, and the fourth, issued before the
  // code yields, still joins the same commit.
  const writes = [1, 2, 3, 4].map((i) => m.set('a@example.com', `n${i}`, i));
  t.same(read(), { n: 2 }, 'nothing is committed before the issuing code yields');
  await Promise.all(writes);
  t.equal(turnEnded, false, 'a full batch commits at once, within the same turn');
  t.same(read(), { n: 6 }, 'all four in that commit');

  // The next write opens a new batch, which again waits for the end of its turn.
  turnEnded = false;
  setImmediate(() => { turnEnded = true; });
  await m.set('a@example.com', 'last', 5);
  t.equal(turnEnded, true);
  t.same(read(), { n: 7 });
});

t.test('commitBatch must be a positive integer', async (t) => {
  for (const commitBatch of [0, -1, 1.5, Number.NaN]) {
    t.throws(() => EmbeddedDriver.open({ path: freshPath(), commitBatch }), { name: 'StorageError', code: 'invalid', message: /commitBatch/ },
      String(commitBatch));
  }
});

t.test('archive pages are capped at MAX_PAGE', async (t) => {
  const d = EmbeddedDriver.open({ path: ':memory:' });
  t.teardown(() => d.close());
  const a = d.archive<number>('a');
  for (let i = 0; i < MAX_PAGE + 10; i++) await a.append('o@example.com', { value: i });
  const all = await a.query('o@example.com');
  t.equal(all.items.length, MAX_PAGE);
  t.equal(all.complete, false);
  const rest = await a.query('o@example.com', { after: all.items[MAX_PAGE - 1]!.id, limit: MAX_PAGE * 5 });
  t.equal(rest.items.length, 10);
  t.equal(rest.complete, true);
  t.equal(await a.count('o@example.com'), MAX_PAGE + 10, 'count is not capped');
  t.equal(await a.delete('o@example.com', {}), MAX_PAGE + 10, 'delete is not capped');
});

t.test('two handles on one file see and serialise each other\'s writes', async (t) => {
  const path = freshPath();
  const one = EmbeddedDriver.open({ path });
  const two = EmbeddedDriver.open({ path });
  t.teardown(async () => { await one.close(); await two.close(); });
  await one.map<string>('accounts').set('example.com', 'alice', 'from one');
  t.equal(await two.map<string>('accounts').get('example.com', 'alice'), 'from one');
  await two.archive<number>('a').append('alice@example.com', { id: 'x', value: 2 });
  t.equal((await one.archive<number>('a').get('alice@example.com', 'x'))?.value, 2);
  await t.rejects(one.archive<number>('a').append('alice@example.com', { id: 'x', value: 3 }),
    { code: 'conflict' }, 'uniqueness holds across handles');
  const counts = await Promise.all(Array.from({ length: 50 }, (_, i) =>
    (i % 2 ? one : two).map<number>('c').increment('alice@example.com', 'n')));
  t.equal(await one.map<number>('c').get('alice@example.com', 'n'), 50, 'increments from both handles add up');
  t.equal(new Set(counts).size, 50, 'each increment saw a distinct value');
  t.equal(await two.map<string>('c').add('alice@example.com', 'n', 'x' as unknown as string), false);
  await one.purgeOwner('alice@example.com');
  t.equal(await two.archive('a').count('alice@example.com'), 0, 'purge seen by the other handle');
});

t.test('errors are StorageErrors with the driver failure as cause', async (t) => {
  const d = EmbeddedDriver.open({ path: ':memory:' });
  await d.archive<number>('a').append('o', { id: 'dup', value: 1 });
  try {
    await d.archive<number>('a').append('o', { id: 'dup', value: 2 });
    t.fail('expected a conflict');
  } catch (err) {
    t.ok(err instanceof StorageError);
    t.equal((err as StorageError).code, 'conflict');
  }
  t.throws(() => d.keyval(''), { code: 'invalid' }, 'empty store name');
  await t.rejects(d.keyval('kv').get(''), { code: 'invalid' }, 'empty owner');
  await t.rejects(d.map('m').set('o', 'k', 1, { ttlMs: -1 }), { code: 'invalid' }, 'negative ttl');
  await t.rejects(d.map('m').increment('o', 'k', Number.NaN), { code: 'invalid' }, 'NaN step');
  await t.rejects(d.archive('a').append('o', { value: 1, ts: 1.5 }), { code: 'invalid' }, 'fractional ts');
  await t.rejects(d.archive('a').query('o', { ids: [1 as unknown as string] }), { code: 'invalid' }, 'bad ids');
  await d.close();
  await t.rejects(d.purgeExpired(), { code: 'closed' });
});
