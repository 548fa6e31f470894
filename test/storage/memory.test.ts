// The embedded driver's JavaScript memory must not grow with archive size: every archive read is
// LIMITed and counts/deletes run inside SQLite. 200k items (~50 MB of values) are appended, then
// every query shape runs, and the heap each one allocates (measured from a collected baseline)
// has to stay far below the archive's size. The database lives in memory to keep the fill fast;
// SQLite's pages are native memory, so they do not show in the V8 heap this test watches.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { EmbeddedDriver, MAX_PAGE } from '../../lib/storage/embedded.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const ITEMS = 200_000;
const PAD = 'x'.repeat(200);
const MB = 1024 * 1024;
/** What one operation may allocate: a fraction of the ~50 MB archive, ample for a page or two. */
const PER_OP_LIMIT = 10 * MB;

function heap(): number {
  return process.memoryUsage().heapUsed;
}

/** Runs `op` after a full collection and returns how much heap it grew, garbage included. */
async function growth<T>(op: () => Promise<T>): Promise<{ result: T; bytes: number }> {
  gc();
  const before = heap();
  const result = await op();
  return { result, bytes: heap() - before };
}

t.test('archive reads do not grow the heap with the archive', async (t) => {
  const d = EmbeddedDriver.open({ path: ':memory:', purgeIntervalMs: 0 });
  t.teardown(() => d.close());
  const a = d.archive<string>('mam');
  const owner = 'alice@example.com';
  const peers = ['bob@example.com', 'carol@example.com', 'dave@example.com', 'erin@example.com'];

  gc();
  const base = heap();
  let dataBytes = 0;
  let middleId = '';
  for (let i = 0; i < ITEMS; i++) {
    const value = `<message to="${peers[i % 4]}"><body>${i} ${PAD}</body></message>`;
    dataBytes += value.length;
    const id = await a.append(owner, { ts: 1_000_000 + i, with: peers[i % 4], value });
    if (i === ITEMS / 2) middleId = id;
  }
  gc();
  const afterFill = heap() - base;
  t.ok(dataBytes > 45 * MB, `archive holds ${(dataBytes / MB).toFixed(1)} MB of values`);
  t.ok(afterFill < 8 * MB, `appending retains ${(afterFill / MB).toFixed(2)} MB of heap`);

  const shapes: Array<[string, () => Promise<unknown>, (r: unknown, label: string) => void]> = [
    ['query without limit is capped', () => a.query(owner), (r) => {
      const p = r as Awaited<ReturnType<typeof a.query>>;
      t.equal(p.items.length, MAX_PAGE, 'a page of MAX_PAGE items');
      t.equal(p.complete, false, 'and says more exists');
    }],
    ['query with a huge limit is capped', () => a.query(owner, { limit: ITEMS }), (r, label) => {
      t.equal((r as Awaited<ReturnType<typeof a.query>>).items.length, MAX_PAGE, label);
    }],
    ['reverse query without limit', () => a.query(owner, { reverse: true }), (r) => {
      const p = r as Awaited<ReturnType<typeof a.query>>;
      t.equal(p.items.length, MAX_PAGE, 'a page of MAX_PAGE items');
      t.match(p.items[p.items.length - 1]!.value, new RegExp(`<body>${ITEMS - 1} `), 'ends at the newest item');
    }],
    ['time range over the whole archive', () => a.query(owner, { start: 0, limit: 50 }), (r, label) => {
      t.equal((r as Awaited<ReturnType<typeof a.query>>).items.length, 50, label);
    }],
    ['time range, newest first', () => a.query(owner, { end: 1_000_000 + ITEMS, limit: 50, reverse: true }),
      (r, label) => t.equal((r as Awaited<ReturnType<typeof a.query>>).items.length, 50, label)],
    ['with filter', () => a.query(owner, { with: peers[2], limit: 50, reverse: true }), (r, label) => {
      t.equal((r as Awaited<ReturnType<typeof a.query>>).items.length, 50, label);
    }],
    ['cursor in the middle', () => a.query(owner, { after: middleId, limit: 100 }), (r, label) => {
      t.equal((r as Awaited<ReturnType<typeof a.query>>).items.length, 100, label);
    }],
    ['count', () => a.count(owner), (r, label) => t.equal(r, ITEMS, label)],
    ['count with a filter', () => a.count(owner, { with: peers[1], start: 1_000_000 }), (r, label) => t.equal(r, ITEMS / 4, label)],
  ];
  for (const [label, op, check] of shapes) {
    const { result, bytes } = await growth(op);
    check(result, label);
    t.ok(bytes < PER_OP_LIMIT, `${label}: ${(bytes / MB).toFixed(2)} MB`);
  }

  // Page through everything; sample the heap growth of single pages along the way.
  let seen = 0;
  let pages = 0;
  let worst = 0;
  let page = await a.query(owner, { limit: 500 });
  seen += page.items.length;
  while (!page.complete) {
    const after = page.items[page.items.length - 1]!.id;
    if (++pages % 50 === 0) {
      const g = await growth(() => a.query(owner, { limit: 500, after }));
      page = g.result;
      worst = Math.max(worst, g.bytes);
    } else {
      page = await a.query(owner, { limit: 500, after });
    }
    seen += page.items.length;
  }
  t.equal(seen, ITEMS, 'paging visits every item once');
  t.ok(worst < PER_OP_LIMIT, `one page of 500 allocates at most ${(worst / MB).toFixed(2)} MB`);

  const del = await growth(() => a.delete(owner, { end: 1_000_000 + ITEMS / 2 - 1 }));
  t.equal(del.result, ITEMS / 2, 'delete by query');
  t.ok(del.bytes < PER_OP_LIMIT, `deleting half the archive: ${(del.bytes / MB).toFixed(2)} MB`);

  gc();
  const retained = heap() - base;
  t.ok(retained < 8 * MB, `after all of it the heap holds ${(retained / MB).toFixed(2)} MB more than at the start`);
});
