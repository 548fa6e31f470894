// The MongoDB driver: the storage contract against a real server when MONGODB_URI names one, and
// the failure paths that need no server (an unreachable server must stop the boot at once, in one
// line, without echoing the password of the connection string).
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import t from 'tap';
import { MongoClient } from 'mongodb';
import { BootError } from '../../lib/errors.js';
import { openStorage } from '../../lib/storage/index.js';
import { MongoDriver, databaseFromUri, redactUri } from '../../lib/storage/mongodb.js';
import { storageContract } from '../helpers/storage-contract.js';

const uri = process.env.MONGODB_URI;

if (uri) {
  // Fresh databases per run, dropped at the end, so runs never see each other's data. The
  // contract's subtests share owner names within a run (they were written for a fresh embedded
  // file per subtest), so each driver it opens gets a database of its own as well.
  const prefix = `parley_test_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const databases: string[] = [];
  const fresh = (): string => {
    const name = `${prefix}_${databases.length + 1}`;
    databases.push(name);
    return name;
  };
  t.teardown(async () => {
    const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5000 });
    try {
      await client.connect();
      for (const name of databases) await client.db(name).dropDatabase();
    } finally {
      await client.close();
    }
  });
  storageContract(t, 'mongodb', () => MongoDriver.open({ uri, database: fresh(), serverSelectionTimeoutMS: 5000 }));

  t.test('mongodb: creates its indexes, owner first, with TTL on expiresAt', async (t) => {
    const database = fresh();
    const d = await MongoDriver.open({ uri, database, serverSelectionTimeoutMS: 5000 });
    t.teardown(() => d.close());
    const client = new MongoClient(uri);
    t.teardown(() => client.close());
    const indexes = await client.db(database).collection('archive').indexes();
    const byName = new Map(indexes.map((i) => [i.name, i]));
    for (const name of ['archive_id', 'archive_seq', 'archive_with', 'archive_ts']) {
      t.equal(Object.keys(byName.get(name)?.key ?? {})[0], 'owner', `${name} starts with owner`);
    }
    t.equal(byName.get('archive_expiry')?.expireAfterSeconds, 0, 'TTL index');
    t.equal(byName.get('archive_id')?.unique, true);
  });
} else {
  t.test('storage contract against MongoDB', { skip: 'MONGODB_URI not set: no MongoDB server can be installed on these machines' }, () => {});
}

/** A loopback port that nothing listens on: bound once by us, then released. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

t.test('an unreachable server fails the boot fast, in one line, without the password', async (t) => {
  const port = await closedPort();
  const started = Date.now();
  const err = await openStorage(
    { driver: 'mongodb', uri: `mongodb://parley:hunter2@127.0.0.1:${port}/chat?serverSelectionTimeoutMS=300` },
    '/nonexistent',
  ).then(() => undefined, (e: unknown) => e);
  const elapsed = Date.now() - started;
  t.ok(err instanceof BootError, 'a BootError');
  const boot = err as BootError;
  t.equal(boot.code, 'STORAGE_FAILED');
  t.notMatch(boot.message, /\n/, 'one line');
  t.match(boot.message, /^mongodb storage: cannot use MongoDB at mongodb:\/\/parley:\*\*\*@127\.0\.0\.1:\d+\/chat/, 'names where');
  t.match(boot.message, /ECONNREFUSED|connect/i, 'says why');
  t.notMatch(boot.message, /hunter2/, 'the password is not shown');
  t.ok(elapsed < 5000, `failed within the selection timeout (${elapsed} ms)`);
});

t.test('the serverSelectionTimeoutMS option bounds how long open waits', async (t) => {
  const port = await closedPort();
  const started = Date.now();
  await t.rejects(MongoDriver.open({ uri: `mongodb://127.0.0.1:${port}`, serverSelectionTimeoutMS: 200 }), { name: 'StorageError', code: 'io' });
  t.ok(Date.now() - started < 5000);
});

t.test('a malformed connection string is a one-line boot error', async (t) => {
  const err = await openStorage({ driver: 'mongodb', uri: 'mongodb://user:pw@host:notaport/x' }, '/nonexistent')
    .then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof BootError);
  t.match((err as BootError).message, /^mongodb storage: invalid MongoDB connection string/);
  t.notMatch((err as BootError).message, /\n/);
  const missing = await openStorage({ driver: 'mongodb' }, '/nonexistent').then(() => undefined, (e: unknown) => e);
  t.match(missing, { code: 'STORAGE_FAILED', message: /storage\.uri is required/ });
});

t.test('database name and password redaction from connection strings', async (t) => {
  t.equal(databaseFromUri('mongodb://localhost/chat'), 'chat');
  t.equal(databaseFromUri('mongodb://a:b@h1:27017,h2:27018/chat?replicaSet=rs0'), 'chat');
  t.equal(databaseFromUri('mongodb+srv://cluster.example.com/my%20db?retryWrites=true'), 'my db');
  t.equal(databaseFromUri('mongodb://localhost'), undefined);
  t.equal(databaseFromUri('mongodb://localhost/'), undefined);
  t.equal(databaseFromUri('mongodb://localhost/?w=majority'), undefined);
  t.equal(databaseFromUri('mongodb://%2Ftmp%2Fmongodb-27017.sock/chat'), 'chat', 'a socket path is percent-encoded');
  t.equal(redactUri('mongodb://u:secret@h/db'), 'mongodb://u:***@h/db');
  t.equal(redactUri('mongodb+srv://u:p%40ss@h/db'), 'mongodb+srv://u:***@h/db');
  t.equal(redactUri('mongodb://u@h/db'), 'mongodb://u@h/db', 'no password, nothing to hide');
  t.equal(redactUri('mongodb://h/db?authSource=admin'), 'mongodb://h/db?authSource=admin');
});
