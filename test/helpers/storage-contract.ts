// The storage contract: one suite every driver runs (embedded now, MongoDB later), so features can
// rely on identical behaviour whichever driver a deployment picks. Each subtest opens its own
// driver and uses owners unique to this run, so a driver backed by a shared server can run it too.
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type t from 'tap';
import {
  StorageError, type ArchiveItem, type ArchiveStore, type Json, type StorageDriver, type StorageErrorCode,
} from '../../lib/storage/types.js';

/** The tap test object handed to a subtest callback (plugins included). */
export type Test = Parameters<Parameters<typeof t.test>[0]>[0];

/** Long enough to outlast any scheduling jitter between a write and the read right after it. */
const TTL_MS = 80;
/** How long to wait for a TTL_MS entry to be past its expiry. */
const EXPIRE_WAIT_MS = 160;

async function rejectsWith(tt: Test, p: Promise<unknown>, code: StorageErrorCode, msg: string): Promise<void> {
  try {
    await p;
    tt.fail(`${msg}: expected StorageError('${code}'), but it resolved`);
  } catch (err) {
    tt.ok(err instanceof StorageError, `${msg}: is a StorageError`);
    tt.equal((err as StorageError).code, code, `${msg}: code ${code}`);
  }
}

export function storageContract(tap: Test, name: string, open: () => Promise<StorageDriver>): void {
  const run = randomBytes(4).toString('hex');
  const user = (local: string): string => `${local}-${run}@example.com`;

  /** A subtest with a freshly opened driver that is closed afterwards. */
  const withDriver = (title: string, fn: (tt: Test, d: StorageDriver) => Promise<void>): void => {
    tap.test(`${name}: ${title}`, async (tt) => {
      const d = await open();
      tt.teardown(() => d.close());
      await fn(tt, d);
    });
  };

  /** Appends values 1..n to an archive with ts 1000, 2000, ...; returns the items in order. */
  const fill = async (a: ArchiveStore<number>, owner: string, n: number, withOf?: (i: number) => string):
  Promise<Array<ArchiveItem<number>>> => {
    const items: Array<ArchiveItem<number>> = [];
    for (let i = 1; i <= n; i++) {
      const w = withOf?.(i);
      const item: ArchiveItem<number> = { id: `m${String(i).padStart(3, '0')}`, ts: i * 1000, value: i };
      if (w !== undefined) item.with = w;
      items.push(item);
      await a.append(owner, item);
    }
    return items;
  };
  const values = (page: { items: Array<ArchiveItem<number>> }): number[] => page.items.map((i) => i.value);

  withDriver('a write given `durable` is applied when it resolves, and any commit it hands over lands', async (tt, d) => {
    const commits: Array<Promise<void>> = [];
    const durable = (commit: Promise<void>) => { commits.push(commit); };
    const owner = user('durable');
    const a = d.archive<number>('durable_a');
    tt.equal(await a.append(owner, { id: 'x1', value: 1 }, { durable }), 'x1');
    await d.map<number>('durable_m').set(owner, 'k', 2, { durable });
    await d.keyval<number>('durable_k').set(owner, 3, { durable });
    tt.equal((await a.get(owner, 'x1'))?.value, 1);
    tt.equal(await d.map<number>('durable_m').get(owner, 'k'), 2);
    tt.equal(await d.keyval<number>('durable_k').get(owner), 3);
    await rejectsWith(tt, a.append(owner, { id: 'x1', value: 9 }, { durable }), 'conflict', 'a taken id');
    tt.equal(await a.delete(owner, { ids: ['x1'] }, { durable }), 1);
    tt.equal(await a.get(owner, 'x1'), undefined, 'a delete is applied when it resolves');
    tt.ok(commits.length <= 4, 'at most one commit per applied write');
    await Promise.all(commits);
  });

  withDriver('has a name', async (tt, d) => {
    tt.type(d.name, 'string');
    tt.ok(d.name.length > 0);
  });

  // ---- keyval ----

  withDriver('keyval get/set/overwrite/delete', async (tt, d) => {
    const kv = d.keyval<Json>('vcard');
    const alice = user('alice');
    tt.equal(await kv.get(alice), undefined, 'absent is undefined');
    await kv.set(alice, { fn: 'Alice', tags: ['a', 'b'], n: 1.5, ok: true, none: null });
    tt.same(await kv.get(alice), { fn: 'Alice', tags: ['a', 'b'], n: 1.5, ok: true, none: null });
    await kv.set(alice, 'replaced');
    tt.equal(await kv.get(alice), 'replaced', 'set overwrites');
    await kv.set(alice, null);
    tt.equal(await kv.get(alice), null, 'a stored null is not the same as absent');
    for (const v of [0, false, '', [], {}] as Json[]) {
      await kv.set(alice, v);
      tt.same(await kv.get(alice), v, `falsy value ${JSON.stringify(v)} round-trips`);
    }
    tt.equal(await kv.delete(alice), true, 'delete of a present entry');
    tt.equal(await kv.get(alice), undefined);
    tt.equal(await kv.delete(alice), false, 'delete of an absent entry');
  });

  withDriver('keyval isolates stores and owners', async (tt, d) => {
    const a = d.keyval<string>('roster');
    const b = d.keyval<string>('private');
    const alice = user('alice');
    const bob = user('bob');
    await a.set(alice, 'a-alice');
    await a.set(bob, 'a-bob');
    await b.set(alice, 'b-alice');
    tt.equal(await a.get(alice), 'a-alice');
    tt.equal(await a.get(bob), 'a-bob');
    tt.equal(await b.get(alice), 'b-alice');
    tt.equal(await b.get(bob), undefined);
    await a.delete(alice);
    tt.equal(await b.get(alice), 'b-alice', 'delete in one store leaves the other');
    tt.equal(await a.get(bob), 'a-bob', 'delete of one owner leaves the other');
    tt.equal(await d.keyval<string>('roster').get(bob), 'a-bob', 'a new handle sees the same data');
  });

  withDriver('keyval TTL', async (tt, d) => {
    const kv = d.keyval<string>('session');
    const alice = user('alice');
    const bob = user('bob');
    await kv.set(alice, 'short', { ttlMs: TTL_MS });
    await kv.set(bob, 'forever');
    tt.equal(await kv.get(alice), 'short', 'visible before expiry');
    await sleep(EXPIRE_WAIT_MS);
    tt.equal(await kv.get(alice), undefined, 'invisible after expiry');
    tt.equal(await kv.get(bob), 'forever', 'entries without TTL stay');
    tt.equal(await kv.delete(alice), false, 'deleting an expired entry reports false');
    await kv.set(alice, 'again', { ttlMs: TTL_MS });
    await kv.set(alice, 'kept');
    await sleep(EXPIRE_WAIT_MS);
    tt.equal(await kv.get(alice), 'kept', 'a set without TTL removes an earlier TTL');
  });

  // ---- map ----

  withDriver('map get/set/delete/keys/entries/clear', async (tt, d) => {
    const m = d.map<Json>('blocklist');
    const alice = user('alice');
    tt.equal(await m.get(alice, 'x'), undefined);
    tt.equal(await m.has(alice, 'x'), false);
    tt.same(await m.keys(alice), []);
    tt.same(await m.entries(alice), []);
    await m.set(alice, 'zed@example.com', true);
    tt.equal(await m.has(alice, 'zed@example.com'), true, 'has');
    tt.equal(await m.has(user('bob'), 'zed@example.com'), false, 'has is per owner');
    await m.set(alice, 'amy@example.com', { reason: 'spam' });
    await m.set(alice, 'mo@example.com', 3);
    await m.set(alice, 'mo@example.com', 4);
    tt.same(await m.get(alice, 'amy@example.com'), { reason: 'spam' });
    tt.equal(await m.get(alice, 'mo@example.com'), 4, 'set overwrites');
    tt.same(await m.keys(alice), ['amy@example.com', 'mo@example.com', 'zed@example.com'], 'keys ascending');
    tt.same(await m.entries(alice),
      [['amy@example.com', { reason: 'spam' }], ['mo@example.com', 4], ['zed@example.com', true]],
      'entries ascending by key');
    tt.equal(await m.delete(alice, 'zed@example.com'), true);
    tt.equal(await m.delete(alice, 'zed@example.com'), false);
    tt.equal(await m.get(alice, 'zed@example.com'), undefined);
    tt.equal(await m.clear(alice), 2, 'clear returns how many keys went');
    tt.same(await m.keys(alice), []);
    tt.equal(await m.clear(alice), 0);
  });

  withDriver('map isolates stores and owners', async (tt, d) => {
    const a = d.map<string>('pep');
    const b = d.map<string>('pins');
    const alice = user('alice');
    const bob = user('bob');
    await a.set(alice, 'k', 'a-alice');
    await a.set(bob, 'k', 'a-bob');
    await b.set(alice, 'k', 'b-alice');
    tt.equal(await a.get(alice, 'k'), 'a-alice');
    tt.equal(await a.get(bob, 'k'), 'a-bob');
    tt.equal(await b.get(alice, 'k'), 'b-alice');
    tt.equal(await a.clear(alice), 1);
    tt.equal(await a.get(bob, 'k'), 'a-bob', 'clear of one owner leaves the other');
    tt.equal(await b.get(alice, 'k'), 'b-alice', 'clear in one store leaves the other');
    tt.same(await b.keys(bob), []);
  });

  withDriver('map getMany', async (tt, d) => {
    const m = d.map<number>('contacts');
    const alice = user('alice');
    for (let i = 0; i < 50; i++) await m.set(alice, `+1555000${String(i).padStart(4, '0')}`, i);
    await m.set(user('bob'), '+15550000007', 999);
    const got = await m.getMany(alice, ['+15550000003', '+19999999999', '+15550000049', '+15550000003']);
    tt.ok(got instanceof Map);
    tt.same([...got.entries()].sort(), [['+15550000003', 3], ['+15550000049', 49]],
      'only existing keys, duplicates once');
    tt.equal((await m.getMany(alice, [])).size, 0, 'empty batch');
    const many = Array.from({ length: 2000 }, (_, i) => `+1555000${String(i).padStart(4, '0')}`);
    tt.equal((await m.getMany(alice, many)).size, 50, 'a large batch works');
    tt.equal((await m.getMany(user('carol'), many)).size, 0, 'another owner sees nothing');
  });

  withDriver('map add', async (tt, d) => {
    const m = d.map<string>('phones');
    const host = `${run}.example.com`;
    tt.equal(await m.add(host, '+15551234567', 'alice'), true, 'stores when absent');
    tt.equal(await m.add(host, '+15551234567', 'mallory'), false, 'refuses when present');
    tt.equal(await m.get(host, '+15551234567'), 'alice', 'the first value stays');
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => m.add(host, 'race', `v${i}`)));
    tt.equal(results.filter(Boolean).length, 1, 'exactly one of concurrent adds wins');
    tt.equal(await m.add(host, 'ttl', 'first', { ttlMs: TTL_MS }), true);
    tt.equal(await m.add(host, 'ttl', 'second'), false, 'refuses while the first is live');
    await sleep(EXPIRE_WAIT_MS);
    tt.equal(await m.add(host, 'ttl', 'third'), true, 'stores over an expired entry');
    tt.equal(await m.get(host, 'ttl'), 'third');
    await sleep(EXPIRE_WAIT_MS);
    tt.equal(await m.get(host, 'ttl'), 'third', 'the new entry carries its own (absent) TTL');
  });

  withDriver('map TTL hides expired entries from every read', async (tt, d) => {
    const m = d.map<string>('pins');
    const alice = user('alice');
    await m.set(alice, 'pin', '123456', { ttlMs: TTL_MS });
    await m.set(alice, 'keep', 'yes');
    tt.equal(await m.get(alice, 'pin'), '123456');
    tt.same(await m.keys(alice), ['keep', 'pin']);
    await sleep(EXPIRE_WAIT_MS);
    tt.equal(await m.get(alice, 'pin'), undefined, 'get');
    tt.equal(await m.has(alice, 'pin'), false, 'has');
    tt.equal(await m.has(alice, 'keep'), true);
    tt.same([...(await m.getMany(alice, ['pin', 'keep'])).keys()], ['keep'], 'getMany');
    tt.same(await m.keys(alice), ['keep'], 'keys');
    tt.same(await m.entries(alice), [['keep', 'yes']], 'entries');
    tt.equal(await m.delete(alice, 'pin'), false, 'delete reports an expired entry as absent');
    await m.set(alice, 'pin2', 'x', { ttlMs: TTL_MS });
    await sleep(EXPIRE_WAIT_MS);
    tt.equal(await m.clear(alice), 1, 'clear counts only live entries');
  });

  withDriver('map increment', async (tt, d) => {
    const m = d.map<number>('counters');
    const alice = user('alice');
    tt.equal(await m.increment(alice, 'hits'), 1, 'absent counts as 0, default step 1');
    tt.equal(await m.increment(alice, 'hits'), 2);
    tt.equal(await m.increment(alice, 'hits', 5), 7);
    tt.equal(await m.increment(alice, 'hits', -10), -3, 'negative steps');
    tt.equal(await m.increment(alice, 'hits', 0.5), -2.5, 'fractional steps');
    tt.equal(await m.get(alice, 'hits'), -2.5, 'the counter reads as a number');
    await m.set(alice, 'preset', 40);
    tt.equal(await m.increment(alice, 'preset', 2), 42, 'continues from a set value');
    const all = await Promise.all(Array.from({ length: 100 }, () => m.increment(alice, 'race')));
    tt.equal(await m.get(alice, 'race'), 100, 'concurrent increments are atomic');
    tt.same([...all].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i + 1),
      'each caller sees a distinct value');
    tt.equal(await m.increment(user('bob'), 'hits'), 1, 'per owner');
    await m.set(alice, 'text', 'not a number' as unknown as number);
    await rejectsWith(tt, m.increment(alice, 'text'), 'invalid', 'incrementing a non-number');
  });

  withDriver('map increment TTL is set at creation only', async (tt, d) => {
    const m = d.map<number>('rate');
    const alice = user('alice');
    tt.equal(await m.increment(alice, 'win', 1, { ttlMs: 150 }), 1);
    await sleep(30);
    // A later TTL must not push the end of the window back.
    tt.equal(await m.increment(alice, 'win', 1, { ttlMs: 5000 }), 2);
    await sleep(170);
    tt.equal(await m.get(alice, 'win'), undefined, 'the window ended when the first TTL said');
    tt.equal(await m.increment(alice, 'win', 1, { ttlMs: TTL_MS }), 1, 'an expired counter restarts');
    await sleep(EXPIRE_WAIT_MS);
    tt.equal(await m.increment(alice, 'win'), 1, 'and restarts again after its new TTL');
    await sleep(EXPIRE_WAIT_MS);
    tt.equal(await m.get(alice, 'win'), 1, 'created without TTL, it stays');
  });

  // ---- archive ----

  withDriver('archive append/get and generated ids', async (tt, d) => {
    const a = d.archive<string>('mam');
    const alice = user('alice');
    const before = Date.now();
    const id1 = await a.append(alice, { value: '<message/>' });
    const id2 = await a.append(alice, { with: user('bob'), value: 'two', ts: 12345 });
    tt.type(id1, 'string');
    tt.not(id1, id2, 'generated ids are unique');
    tt.match(id1, /^[A-Za-z0-9_-]+$/, 'generated ids are URL-safe');
    const item1 = await a.get(alice, id1);
    tt.ok(item1);
    tt.equal(item1?.id, id1);
    tt.equal(item1?.value, '<message/>');
    tt.ok(item1 && item1.ts >= before && item1.ts <= Date.now(), 'ts defaults to now');
    tt.notOk(item1 && 'with' in item1, 'no with when none was given');
    tt.same(await a.get(alice, id2), { id: id2, ts: 12345, with: user('bob'), value: 'two' });
    tt.equal(await a.get(alice, 'nope'), undefined, 'unknown id');
    tt.equal(await a.get(user('bob'), id1), undefined, 'ids are per owner');
    tt.equal(await d.archive('other').get(alice, id1), undefined, 'ids are per store');
    const ids = new Set<string>();
    for (let i = 0; i < 200; i++) ids.add(await a.append(alice, { value: String(i) }));
    tt.equal(ids.size, 200, '200 generated ids are distinct');
  });

  withDriver('archive replace keeps the item in its place', async (tt, d) => {
    const a = d.archive<string>('muc');
    const alice = user('alice');
    const first = await a.append(alice, { id: 'r1', ts: 1000, with: user('bob'), value: 'secret text' });
    await a.append(alice, { id: 'r2', ts: 2000, value: 'later' });
    tt.equal(await a.replace(alice, first, 'tombstone'), true);
    tt.same(await a.get(alice, first), { id: 'r1', ts: 1000, with: user('bob'), value: 'tombstone' }, 'id, ts and with stay');
    const page = await a.query(alice);
    tt.same(page.items.map((i) => [i.id, i.value]), [['r1', 'tombstone'], ['r2', 'later']], 'same place in archive order');
    tt.same((await a.query(alice, { after: 'r1' })).items.map((i) => i.id), ['r2'], 'a cursor on it still works');
    tt.same((await a.query(alice, { with: user('bob') })).items.map((i) => i.value), ['tombstone'], 'with filter still finds it');
    tt.equal(await a.replace(alice, 'nope', 'x'), false, 'unknown id');
    tt.equal(await a.replace(user('bob'), first, 'x'), false, 'ids are per owner');
    tt.equal(await d.archive<string>('other').replace(alice, first, 'x'), false, 'ids are per store');
    tt.equal((await a.get(alice, first))?.value, 'tombstone', 'untouched by the failed calls');
    await a.append(alice, { id: 'short', value: 'v' }, { ttlMs: TTL_MS });
    await sleep(EXPIRE_WAIT_MS);
    tt.equal(await a.replace(alice, 'short', 'x'), false, 'an expired item is not replaced');
    await rejectsWith(tt, a.replace('', first, 'x'), 'invalid', 'empty owner');
    await rejectsWith(tt, a.replace(alice, '', 'x'), 'invalid', 'empty id');
  });

  withDriver('archive duplicate id conflicts', async (tt, d) => {
    const a = d.archive<number>('offline');
    const alice = user('alice');
    tt.equal(await a.append(alice, { id: 'fixed', value: 1 }), 'fixed', 'a given id is kept');
    await rejectsWith(tt, a.append(alice, { id: 'fixed', value: 2 }), 'conflict', 'duplicate id');
    tt.equal((await a.get(alice, 'fixed'))?.value, 1, 'the original stays');
    tt.equal(await a.count(alice), 1, 'nothing was added');
    tt.equal(await a.append(user('bob'), { id: 'fixed', value: 3 }), 'fixed', 'same id, other owner');
    tt.equal(await d.archive<number>('mam').append(alice, { id: 'fixed', value: 4 }), 'fixed',
      'same id, other store');
    await a.append(alice, { id: 'short', value: 5 }, { ttlMs: TTL_MS });
    await sleep(EXPIRE_WAIT_MS);
    tt.equal(await a.append(alice, { id: 'short', value: 6 }), 'short', 'an expired item frees its id');
    tt.equal((await a.get(alice, 'short'))?.value, 6);
  });

  withDriver('archive order is insertion order, ts is data', async (tt, d) => {
    const a = d.archive<number>('muc');
    const room = `room-${run}@conference.example.com`;
    await a.append(room, { ts: 5000, value: 1 });
    await a.append(room, { ts: 1000, value: 2 });
    await a.append(room, { ts: 3000, value: 3 });
    tt.same(values(await a.query(room)), [1, 2, 3], 'insertion order, not ts order');
    tt.same(values(await a.query(room, { start: 2000 })), [1, 3], 'start filters on ts');
    tt.same(values(await a.query(room, { start: 2000, limit: 1, reverse: true })), [3]);
  });

  withDriver('archive query filters', async (tt, d) => {
    const a = d.archive<number>('mam');
    const alice = user('alice');
    const bob = user('bob');
    const carol = user('carol');
    const items = await fill(a, alice, 20, (i) => (i % 2 === 0 ? bob : carol));
    await fill(a, user('dave'), 5);
    const all = await a.query(alice);
    tt.same(values(all), items.map((i) => i.value), 'everything, ascending');
    tt.equal(all.complete, true);
    tt.same(all.items[1], items[1], 'items come back whole');
    tt.same(values(await a.query(alice, { start: 5000 })), [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
      'start is inclusive');
    tt.same(values(await a.query(alice, { end: 3000 })), [1, 2, 3], 'end is inclusive');
    tt.same(values(await a.query(alice, { start: 4000, end: 6000 })), [4, 5, 6]);
    tt.same(values(await a.query(alice, { start: 6000, end: 4000 })), [], 'empty range');
    tt.same(values(await a.query(alice, { with: bob })), [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
    tt.same(values(await a.query(alice, { with: bob, start: 7000, end: 12000 })), [8, 10, 12]);
    tt.same(values(await a.query(alice, { with: 'nobody@example.com' })), []);
    tt.same(values(await a.query(alice, { ids: ['m015', 'm003', 'nope', 'm003'] })), [3, 15],
      'ids: archive order, unknown ids ignored');
    tt.same(values(await a.query(alice, { ids: [] })), [], 'no ids, no items');
    tt.same(values(await a.query(alice, { ids: ['m002', 'm003', 'm004'], with: bob })), [2, 4],
      'ids combine with other filters');
    tt.same(values(await a.query(alice, { after: 'm017' })), [18, 19, 20], 'after is exclusive');
    tt.same(values(await a.query(alice, { before: 'm003' })), [1, 2], 'before is exclusive');
    tt.same(values(await a.query(alice, { after: 'm005', before: 'm009' })), [6, 7, 8]);
    tt.same(values(await a.query(alice, { after: 'm004', with: carol, limit: 2 })), [5, 7]);
    tt.same(values(await a.query(alice, { after: 'm002', end: 5000 })), [3, 4, 5]);
    tt.same(values(await a.query(user('dave'), { start: 2000, end: 4000 })), [2, 3, 4], 'per owner');
    await rejectsWith(tt, a.query(alice, { after: 'no-such-id' }), 'invalid', 'unknown after id');
    await rejectsWith(tt, a.query(alice, { before: 'no-such-id' }), 'invalid', 'unknown before id');
    await rejectsWith(tt, d.archive<number>('other').query(alice, { after: 'm001' }), 'invalid',
      'a cursor from another store is unknown');
  });

  withDriver('archive limit, reverse and complete', async (tt, d) => {
    const a = d.archive<number>('mam');
    const alice = user('alice');
    await fill(a, alice, 25);

    let page = await a.query(alice, { limit: 10 });
    tt.same(values(page), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'first page');
    tt.equal(page.complete, false);
    const forward: number[] = [...values(page)];
    while (!page.complete) {
      page = await a.query(alice, { limit: 10, after: page.items[page.items.length - 1]!.id });
      forward.push(...values(page));
    }
    tt.same(forward, Array.from({ length: 25 }, (_, i) => i + 1), 'paging forward walks everything once');
    tt.equal(values(page).length, 5, 'the last forward page is short');

    page = await a.query(alice, { limit: 10, reverse: true });
    tt.same(values(page), [16, 17, 18, 19, 20, 21, 22, 23, 24, 25], 'reverse: last page, ascending');
    tt.equal(page.complete, false);
    page = await a.query(alice, { limit: 10, reverse: true, before: page.items[0]!.id });
    tt.same(values(page), [6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    tt.equal(page.complete, false);
    page = await a.query(alice, { limit: 10, reverse: true, before: page.items[0]!.id });
    tt.same(values(page), [1, 2, 3, 4, 5]);
    tt.equal(page.complete, true, 'complete when the start is reached');

    page = await a.query(alice, { limit: 5, after: 'm020' });
    tt.same(values(page), [21, 22, 23, 24, 25]);
    tt.equal(page.complete, true, 'complete when exactly the rest fits');
    page = await a.query(alice, { limit: 5, before: 'm006', reverse: true });
    tt.same(values(page), [1, 2, 3, 4, 5]);
    tt.equal(page.complete, true, 'reverse: complete when exactly the rest fits');
    page = await a.query(alice, { limit: 5, after: 'm025' });
    tt.same(values(page), []);
    tt.equal(page.complete, true, 'nothing after the last item');
    page = await a.query(alice, { limit: 0 });
    tt.same(values(page), [], 'limit 0 returns no items');
    tt.equal(page.complete, false, 'limit 0 on a non-empty archive is not complete');
    tt.equal((await a.query(user('nobody'), { limit: 0 })).complete, true);
    page = await a.query(alice, { limit: 3, reverse: true, start: 4000, end: 12000 });
    tt.same(values(page), [10, 11, 12], 'reverse with a time range');
    tt.equal(page.complete, false);
    page = await a.query(alice, { limit: 3, reverse: true, after: 'm020', start: 21000 });
    tt.same(values(page), [23, 24, 25], 'reverse with after');
    tt.equal(page.complete, false, '21 and 22 remain in the reverse direction');
    page = await a.query(alice, { limit: 100, reverse: true });
    tt.equal(page.items.length, 25);
    tt.equal(page.complete, true, 'a limit above the size is complete');
  });

  withDriver('archive count', async (tt, d) => {
    const a = d.archive<number>('mam');
    const alice = user('alice');
    const bob = user('bob');
    await fill(a, alice, 12, (i) => (i <= 4 ? bob : user('carol')));
    tt.equal(await a.count(alice), 12);
    tt.equal(await a.count(alice, {}), 12);
    tt.equal(await a.count(alice, { with: bob }), 4);
    tt.equal(await a.count(alice, { start: 3000, end: 7000 }), 5);
    tt.equal(await a.count(alice, { after: 'm010' }), 2);
    tt.equal(await a.count(alice, { before: 'm010', with: bob }), 4);
    tt.equal(await a.count(alice, { ids: ['m001', 'm012', 'zzz'] }), 2);
    tt.equal(await a.count(alice, { limit: 3, reverse: true }), 12, 'limit does not cap the count');
    tt.equal(await a.count(user('nobody')), 0);
  });

  withDriver('archive delete and clear', async (tt, d) => {
    const a = d.archive<number>('offline');
    const alice = user('alice');
    const bob = user('bob');
    await fill(a, alice, 15, (i) => (i % 3 === 0 ? bob : user('carol')));
    await fill(a, bob, 3);
    tt.equal(await a.delete(alice, { ids: ['m001', 'm002', 'missing'] }), 2, 'delete by ids');
    tt.equal(await a.delete(alice, { ids: ['m001'] }), 0, 'deleting again finds nothing');
    tt.equal(await a.delete(alice, { with: bob, end: 9000 }), 3, 'delete by with and end');
    tt.same(values(await a.query(alice)), [4, 5, 7, 8, 10, 11, 12, 13, 14, 15]);
    tt.equal(await a.delete(alice, { before: 'm005', limit: 0, reverse: true }), 1,
      'limit and reverse are ignored');
    tt.equal(await a.delete(alice, { after: 'm013' }), 2);
    tt.same(values(await a.query(alice)), [5, 7, 8, 10, 11, 12, 13]);
    tt.equal(await a.count(bob), 3, 'another owner is untouched');
    tt.equal(await a.delete(alice, {}), 7, 'an empty query deletes everything');
    await fill(a, alice, 4);
    tt.equal(await a.clear(alice), 4);
    tt.equal(await a.count(alice), 0);
    tt.equal(await a.clear(alice), 0);
    tt.equal(await a.count(bob), 3);
    const id = await a.append(alice, { value: 99 });
    tt.equal((await a.get(alice, id))?.value, 99, 'appending after a clear works');
  });

  withDriver('archive TTL', async (tt, d) => {
    const a = d.archive<number>('offline');
    const alice = user('alice');
    await a.append(alice, { id: 'a', ts: 1000, value: 1 });
    await a.append(alice, { id: 'b', ts: 2000, value: 2 }, { ttlMs: TTL_MS });
    await a.append(alice, { id: 'c', ts: 3000, value: 3 });
    tt.equal(await a.count(alice), 3);
    await sleep(EXPIRE_WAIT_MS);
    tt.same(values(await a.query(alice)), [1, 3], 'query');
    tt.equal(await a.get(alice, 'b'), undefined, 'get');
    tt.equal(await a.count(alice), 2, 'count');
    tt.same(values(await a.query(alice, { ids: ['b', 'c'] })), [3], 'ids');
    const page = await a.query(alice, { limit: 1, after: 'a' });
    tt.same(values(page), [3]);
    tt.equal(page.complete, true, 'an expired item does not keep a page incomplete');
    await rejectsWith(tt, a.query(alice, { after: 'b' }), 'invalid', 'an expired cursor is unknown');
    tt.equal(await a.delete(alice, { start: 0 }), 2, 'delete counts only live items');
    await a.append(alice, { id: 'd', value: 4 }, { ttlMs: TTL_MS });
    await sleep(EXPIRE_WAIT_MS);
    tt.equal(await a.clear(alice), 0, 'clear counts only live items');
  });

  // ---- values ----

  withDriver('unicode and large values round-trip', async (tt, d) => {
    const alice = user('ålice-日本');
    const weird = 'héllo wörld — 日本語 — 😀👩‍👩‍👧 — \u{10FFFF} — \u0000 nul — "quotes" \\ \n\t';
    const big = 'x'.repeat(1024 * 1024) + '😀';
    const doc = { [weird]: [weird, { nested: weird }], big };
    await d.keyval<Json>('kv').set(alice, doc);
    tt.same(await d.keyval<Json>('kv').get(alice), doc, 'keyval');
    const m = d.map<string>('map');
    await m.set(alice, weird, big);
    tt.equal(await m.get(alice, weird), big, 'map key and value');
    tt.same(await m.keys(alice), [weird]);
    const a = d.archive<string>('archive');
    const stanza = `<message xmlns="jabber:client" to="bob@example.com"><body>${weird}</body></message>`;
    const id = await a.append(alice, { id: `id-${weird}`, with: `${weird}@example.com`, value: stanza });
    await a.append(alice, { value: big });
    const page = await a.query(alice, { with: `${weird}@example.com` });
    tt.same(page.items, [{ id, ts: page.items[0]?.ts, with: `${weird}@example.com`, value: stanza }]);
    tt.equal((await a.query(alice, { after: id })).items[0]?.value, big, 'a 1 MiB archive value');
    tt.same([...(await m.getMany(alice, [weird])).keys()], [weird], 'getMany with unicode keys');
  });

  withDriver('invalid input is rejected', async (tt, d) => {
    const alice = user('alice');
    await rejectsWith(tt, d.keyval('kv').set(alice, undefined as unknown as Json), 'invalid', 'undefined value');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await rejectsWith(tt, d.map('m').set(alice, 'k', cyclic as Json), 'invalid', 'cyclic value');
    await rejectsWith(tt, d.archive('a').query(alice, { limit: -1 }), 'invalid', 'negative limit');
    await rejectsWith(tt, d.archive('a').append(alice, { value: 1, ts: Number.NaN }), 'invalid', 'NaN ts');
    tt.equal(await d.keyval('kv').get(alice), undefined, 'nothing was stored');
  });

  // ---- driver ----

  withDriver('purgeOwner removes one owner everywhere', async (tt, d) => {
    const alice = user('alice');
    const bob = user('bob');
    for (const o of [alice, bob]) {
      await d.keyval<string>('vcard').set(o, 'card');
      await d.keyval<string>('roster').set(o, 'roster');
      await d.map<number>('blocklist').set(o, 'x', 1);
      await d.map<number>('counters').increment(o, 'y');
      await d.archive<number>('mam').append(o, { value: 1 });
      await d.archive<number>('offline').append(o, { value: 2 });
    }
    await d.purgeOwner(alice);
    tt.equal(await d.keyval('vcard').get(alice), undefined);
    tt.equal(await d.keyval('roster').get(alice), undefined);
    tt.same(await d.map('blocklist').keys(alice), []);
    tt.same(await d.map('counters').keys(alice), []);
    tt.equal(await d.archive('mam').count(alice), 0);
    tt.equal(await d.archive('offline').count(alice), 0);
    tt.equal(await d.keyval('vcard').get(bob), 'card', 'other owners keep their data');
    tt.equal(await d.map('counters').get(bob, 'y'), 1);
    tt.equal(await d.archive('offline').count(bob), 1);
    await d.purgeOwner(user('nobody'));
    tt.pass('purging an owner without data is fine');
  });

  // Writes issued without awaiting each other: a driver may commit them as one (group commit),
  // but each succeeds or fails on its own and is readable once its promise resolved. Their order
  // is not promised (a network driver may apply them in any order); awaited writes keep theirs.
  withDriver('writes issued together succeed or fail each on its own', async (tt, d) => {
    const alice = user('alice');
    const a = d.archive<number>('offline');
    const m = d.map<number>('offline_index');
    await a.append(alice, { id: 'taken', value: 0 });
    const results = await Promise.allSettled([
      a.append(alice, { id: 'n1', value: 1 }),
      m.set('example.com', alice, 1),
      a.append(alice, { id: 'taken', value: 9 }),
      a.append(alice, { id: 'n2', value: 2 }),
      m.increment(alice, 'count'),
      m.increment(alice, 'count'),
    ]);
    tt.same(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
    const failed = results[2] as PromiseRejectedResult;
    tt.ok(failed.reason instanceof StorageError && failed.reason.code === 'conflict', 'the taken id is a conflict');
    const counts = results.slice(4).map((r) => (r as PromiseFulfilledResult<number>).value);
    tt.same(counts.sort(), [1, 2], 'each increment saw its own value');
    const items = (await a.query(alice)).items.map((i): [string, number] => [i.id, i.value]);
    tt.same(items[0], ['taken', 0], 'the conflict changed nothing');
    tt.same(items.slice(1).sort(), [['n1', 1], ['n2', 2]], 'the others were stored');
    tt.equal(await m.get('example.com', alice), 1);
    tt.equal(await m.get(alice, 'count'), 2);
  });

  withDriver('many appends issued together are all stored, each under its own id', async (tt, d) => {
    const alice = user('alice');
    const a = d.archive<string>('mam');
    const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => a.append(alice, { value: `v${i}` })));
    tt.equal(new Set(ids).size, 20, 'each got its own id');
    const page = await a.query(alice);
    tt.same(page.items.map((i) => i.value).sort(), Array.from({ length: 20 }, (_, i) => `v${i}`).sort());
    tt.same(page.items.map((i) => i.id).sort(), [...ids].sort(), 'under the ids returned');
  });

  tap.test(`${name}: calls after close reject with 'closed'`, async (tt) => {
    const d = await open();
    const alice = user('alice');
    const kv = d.keyval<string>('kv');
    const m = d.map<number>('map');
    const a = d.archive<number>('archive');
    await kv.set(alice, 'v');
    await d.close();
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['keyval.get', () => kv.get(alice)],
      ['keyval.set', () => kv.set(alice, 'w')],
      ['keyval.delete', () => kv.delete(alice)],
      ['map.get', () => m.get(alice, 'k')],
      ['map.getMany', () => m.getMany(alice, ['k'])],
      ['map.set', () => m.set(alice, 'k', 1)],
      ['map.add', () => m.add(alice, 'k', 1)],
      ['map.delete', () => m.delete(alice, 'k')],
      ['map.keys', () => m.keys(alice)],
      ['map.entries', () => m.entries(alice)],
      ['map.clear', () => m.clear(alice)],
      ['map.increment', () => m.increment(alice, 'k')],
      ['archive.append', () => a.append(alice, { value: 1 })],
      ['archive.query', () => a.query(alice)],
      ['archive.get', () => a.get(alice, 'x')],
      ['archive.count', () => a.count(alice)],
      ['archive.delete', () => a.delete(alice, {})],
      ['archive.clear', () => a.clear(alice)],
      ['new handle after close', () => d.keyval('kv').get(alice)],
      ['purgeOwner', () => d.purgeOwner(alice)],
    ];
    for (const [label, call] of calls) await rejectsWith(tt, Promise.resolve().then(call), 'closed', label);
    await d.close();
    tt.pass('closing twice is harmless');
  });
}
