// openStorage: driver selection, where the embedded file goes, and one-line boot errors.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { BootError } from '../../lib/errors.js';
import { embeddedPath, openStorage } from '../../lib/storage/index.js';

const dir = mkdtempSync(join(tmpdir(), 'parley-open-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

async function bootError(t: Tap, p: Promise<unknown>, match: RegExp, label: string): Promise<void> {
  try {
    await p;
    t.fail(`${label}: expected a BootError`);
  } catch (err) {
    t.ok(err instanceof BootError, `${label}: BootError`);
    t.equal((err as BootError).code, 'STORAGE_FAILED', `${label}: STORAGE_FAILED`);
    t.match((err as Error).message, match, `${label}: message`);
    t.notMatch((err as Error).message, /\n/, `${label}: one line`);
  }
}
type Tap = Parameters<Parameters<typeof t.test>[0]>[0];

t.test('embedded: default file under the data directory', async (t) => {
  const data = join(dir, 'data-default');
  const s = await openStorage({ driver: 'embedded' }, data);
  t.equal(s.name, 'embedded');
  await s.keyval<string>('kv').set('alice@example.com', 'v');
  await s.close();
  t.ok(existsSync(join(data, 'parley.db')), 'the data directory and parley.db were created');
  const again = await openStorage({ driver: 'embedded' }, data);
  t.equal(await again.keyval<string>('kv').get('alice@example.com'), 'v', 'data survives a reopen');
  await again.close();
});

t.test('embedded: relative paths resolve against the data directory', async (t) => {
  t.equal(embeddedPath({ path: 'sub/x.db' }, '/srv/parley/data'), join('/srv/parley/data', 'sub', 'x.db'));
  t.equal(embeddedPath({}, '/srv/parley/data'), join('/srv/parley/data', 'parley.db'));
  t.equal(embeddedPath({ path: '/var/db/p.db' }, '/srv/parley/data'), '/var/db/p.db', 'absolute kept');
  t.equal(embeddedPath({ path: ':memory:' }, '/srv/parley/data'), ':memory:');
  const s = await openStorage({ driver: 'embedded', path: 'nested/deeper/p.db' }, join(dir, 'data-rel'));
  await s.close();
  t.ok(existsSync(join(dir, 'data-rel', 'nested', 'deeper', 'p.db')));
  const abs = join(dir, 'elsewhere', 'abs.db');
  const s2 = await openStorage({ driver: 'embedded', path: abs }, join(dir, 'unused'));
  await s2.close();
  t.ok(existsSync(abs), 'absolute path used as given');
  t.notOk(existsSync(join(dir, 'unused', 'parley.db')));
});

t.test('embedded: in memory', async (t) => {
  const s = await openStorage({ driver: 'embedded', path: ':memory:' }, join(dir, 'never'));
  await s.map<number>('m').set('o', 'k', 1);
  t.equal(await s.map<number>('m').get('o', 'k'), 1);
  await s.close();
  t.notOk(existsSync(join(dir, 'never')), 'nothing is written to disk');
});

t.test('failures become one-line STORAGE_FAILED boot errors', async (t) => {
  const asDir = join(dir, 'is-a-directory');
  mkdirSync(asDir, { recursive: true });
  await bootError(t, openStorage({ driver: 'embedded', path: asDir }, dir), /embedded storage: .*is-a-directory/,
    'path is a directory');
  const garbage = join(dir, 'garbage.db');
  writeFileSync(garbage, 'this is not a database\n'.repeat(500));
  await bootError(t, openStorage({ driver: 'embedded', path: garbage }, dir), /not a database/i, 'not a database');
  // Port 9 (discard) on loopback: nothing listens, so the driver gives up at once.
  await bootError(t, openStorage({ driver: 'mongodb', uri: 'mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=500' }, dir),
    /mongodb storage: cannot use MongoDB at mongodb:\/\/127\.0\.0\.1:9/, 'mongodb');
  await bootError(t, openStorage({ driver: 'redis' } as unknown as { driver: 'embedded' }, dir),
    /unknown storage driver "redis"/, 'unknown driver');
});
