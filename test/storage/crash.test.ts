// Durability of the embedded driver: a writer process is killed with SIGKILL in the middle of a
// stream of writes, and every write it had acknowledged must be there afterwards, in a database
// that passes SQLite's integrity check. While the writer runs, this process opens the same file as
// a second driver (the admin CLI case), reads the writer's data and writes its own.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import t from 'tap';
import { EmbeddedDriver } from '../../lib/storage/embedded.js';

const WRITER = fileURLToPath(new URL('../fixtures/storage-writer.ts', import.meta.url));
const OWNER = 'writer@example.com';

interface Acks {
  /** Archive ids by loop index. */
  archive: Map<number, string>;
  /** Loop indexes whose map write was acknowledged. */
  map: Set<number>;
  /** Highest acknowledged counter value. */
  counter: number;
  total: number;
}

interface Writer {
  child: ChildProcess;
  acks: Acks;
  /** Resolves once at least `n` acknowledgements have been printed in total. */
  until(n: number): Promise<void>;
  exited: Promise<NodeJS.Signals | number | null>;
}

function startWriter(path: string, prefix: string): Writer {
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, path, prefix], {
    // stdin stays open for the writer's lifetime; it exits when the pipe closes with this process.
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const acks: Acks = { archive: new Map(), map: new Set(), counter: 0, total: 0 };
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  let buffered = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    buffered += chunk;
    const lines = buffered.split('\n');
    // The last piece may be a line cut short by the kill; only whole lines count as acknowledged.
    buffered = lines.pop()!;
    for (const line of lines) {
      const [kind, a, b] = line.split(' ');
      if (kind === 'a') acks.archive.set(Number(a), b!);
      else if (kind === 'm') acks.map.add(Number(a));
      else if (kind === 'c') acks.counter = Math.max(acks.counter, Number(a));
      else continue;
      acks.total++;
    }
    for (const w of [...waiters]) {
      if (acks.total >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => {
    // 'close' rather than 'exit': lines the writer printed just before dying may still be in the
    // pipe when it exits, and they are acknowledgements too.
    child.on('close', (code, signal) => resolve(signal ?? code));
  });
  const until = (n: number): Promise<void> => new Promise((resolve, reject) => {
    if (acks.total >= n) return resolve();
    waiters.push({ n, resolve });
    void exited.then((how) => reject(new Error(`writer exited (${String(how)}) before ${n} acks`)));
  });
  return { child, acks, until, exited };
}

const expectedValue = (prefix: string, i: number): string => `${prefix}${i}:` + 'x'.repeat((i * 37) % 9000);

t.test('acknowledged writes survive SIGKILL, across repeated crashes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'parley-crash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'nested', 'parley.db');
  const rounds: Array<{ prefix: string; acks: Acks }> = [];
  let lastCounter = 0;

  for (const prefix of ['r1-', 'r2-', 'r3-']) {
    const w = startWriter(path, prefix);
    t.teardown(() => { if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL'); });
    await w.until(600);

    // A second driver on the same file while the writer runs: it sees acknowledged writes and can
    // write itself (its writes wait on the writer's lock through busy_timeout).
    const second = EmbeddedDriver.open({ path, purgeIntervalMs: 0 });
    const seen = [...w.acks.archive.entries()].slice(-50);
    let visible = 0;
    for (const [, id] of seen) if (await second.archive('crash').get(OWNER, id)) visible++;
    t.equal(visible, seen.length, `${prefix}: a second handle sees the writer's acknowledged items`);
    for (let i = 0; i < 20; i++) await second.map<number>('admin').set('admin@example.com', `${prefix}${i}`, i);
    t.ok((await second.archive('crash').count(OWNER)) >= w.acks.archive.size, `${prefix}: count from the second handle`);
    await second.close();

    await w.until(w.acks.total + 1500);
    w.child.kill('SIGKILL');
    t.equal(await w.exited, 'SIGKILL', `${prefix}: the writer died by SIGKILL`);
    t.ok(w.acks.total > 2000, `${prefix}: ${w.acks.total} acknowledged writes before the kill`);
    rounds.push({ prefix, acks: w.acks });
    t.ok(w.acks.counter > lastCounter, `${prefix}: the counter continued from the previous run`);
    lastCounter = w.acks.counter;

    // Reopen after the crash and check every round so far: recovery must not lose earlier rounds.
    const raw = new Database(path, { readonly: true });
    t.equal(raw.pragma('integrity_check', { simple: true }), 'ok', `${prefix}: integrity_check`);
    raw.close();
    const d = EmbeddedDriver.open({ path, purgeIntervalMs: 0 });
    const archive = d.archive<string>('crash');
    const map = d.map<{ i: number; pad: string }>('crash');
    for (const r of rounds) {
      let missing = 0;
      let wrong = 0;
      for (const [i, id] of r.acks.archive) {
        const item = await archive.get(OWNER, id);
        if (!item) missing++;
        else if (item.value !== expectedValue(r.prefix, i) || item.with !== `peer${i % 5}@example.com`) wrong++;
      }
      t.equal(missing, 0, `${prefix}: no acknowledged archive item of ${r.prefix} is missing`);
      t.equal(wrong, 0, `${prefix}: archive items of ${r.prefix} are intact`);
      const keys = [...r.acks.map].map((i) => `${r.prefix}${i}`);
      const got = await map.getMany(OWNER, keys);
      t.equal(got.size, keys.length, `${prefix}: every acknowledged map write of ${r.prefix} is there`);
      t.ok([...got].every(([k, v]) => k === `${r.prefix}${v.i}` && v.pad.length === v.i % 500),
        `${prefix}: map values of ${r.prefix} are intact`);
    }
    t.ok((await map.get(OWNER, 'counter') as unknown as number) >= lastCounter, `${prefix}: counter kept`);
    const total = rounds.reduce((n, r) => n + r.acks.archive.size, 0);
    const count = await archive.count(OWNER);
    // Each earlier round appended one item after recovery, and each writer may have committed
    // one item it was killed before printing.
    const floor = total + rounds.length - 1;
    t.ok(count >= floor && count <= floor + rounds.length, `${prefix}: ${count} items for ${floor} acknowledged`);
    t.equal((await d.map('admin').keys('admin@example.com')).length, rounds.length * 20,
      `${prefix}: the second handle's writes are there`);
    // The reopened database keeps working: append after recovery, then page through the archive.
    await archive.append(OWNER, { id: `after-${prefix}`, value: 'ok' });
    const page = await archive.query(OWNER, { limit: 1, reverse: true });
    t.equal(page.items[0]?.id, `after-${prefix}`, `${prefix}: appends continue in order after recovery`);
    await d.close();
  }
});

t.test('a second process sees the first one\'s writes while both are open', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'parley-shared-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'parley.db');
  // This process writes first and keeps its handle open, as a running server would.
  const server = EmbeddedDriver.open({ path, purgeIntervalMs: 0 });
  t.teardown(() => server.close());
  await server.map<string>('accounts').set('example.com', 'alice', 'record');

  const w = startWriter(path, 'cli-');
  t.teardown(() => { if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL'); });
  await w.until(300);
  const [i, id] = [...w.acks.archive.entries()].at(-1)!;
  const item = await server.archive<string>('crash').get(OWNER, id);
  t.equal(item?.value, expectedValue('cli-', i), 'the open handle sees the other process\'s commit');
  t.ok(await server.map('crash').get(OWNER, `cli-${[...w.acks.map].at(-1)!}`), 'and its map writes');
  w.child.kill('SIGKILL');
  await w.exited;
  t.equal(await server.map<string>('accounts').get('example.com', 'alice'), 'record', 'own data unaffected');
});
