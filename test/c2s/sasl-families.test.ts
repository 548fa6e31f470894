// Accounts whose stored credentials lack a hash family (imported with SCRAM-SHA-1 only): SCRAM of
// a missing family fails at once and says what works, unknown users still look like accounts,
// and a PLAIN login (the one that reveals the password) adds the missing families.
import t from 'tap';
import type { AccountRecord } from '../../lib/accounts.js';
import { tlsLogin, type TlsLoginOptions } from '../helpers/scram-client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer();
t.teardown(() => srv.close());
const store = srv.server.storage.map<AccountRecord>('accounts');

const login = (o: Partial<TlsLoginOptions>) =>
  tlsLogin({ port: srv.c2sPort, user: 'carol', password: 'imported', mechanism: 'PLAIN', ...o });

t.test('new accounts get SHA-1, SHA-256 and SHA-512 credentials', async (t) => {
  await srv.register('fresh', 'pw');
  t.same(Object.keys((await store.get('localhost', 'fresh'))!.scram).sort(), ['SHA-1', 'SHA-256', 'SHA-512']);
});

t.test('an account with SCRAM-SHA-1 only', async (t) => {
  await srv.register('carol', 'imported');
  const record = (await store.get('localhost', 'carol'))!;
  const sha1 = record.scram['SHA-1']!;
  await store.set('localhost', 'carol', { ...record, scram: { 'SHA-1': sha1 } });

  for (const mechanism of ['SCRAM-SHA-512', 'SCRAM-SHA-256', 'SCRAM-SHA-512-PLUS']) {
    const r = await login({ mechanism, cbType: mechanism.endsWith('-PLUS') ? 'tls-exporter' : undefined });
    t.same([r.ok, r.condition], [false, 'invalid-mechanism'], `${mechanism} fails clearly`);
    t.match(r.text, /no SCRAM-SHA-(512|256) credentials yet: use SCRAM-SHA-1, or log in once with PLAIN/);
  }
  const scram = await login({ mechanism: 'SCRAM-SHA-1' });
  t.same([scram.ok, scram.verified], [true, true], 'the family it has works');
  t.same(Object.keys((await store.get('localhost', 'carol'))!.scram), ['SHA-1'], 'SCRAM does not reveal the password: nothing added');

  t.equal((await login({ password: 'wrong' })).condition, 'not-authorized');
  t.same(Object.keys((await store.get('localhost', 'carol'))!.scram), ['SHA-1'], 'a wrong password adds nothing');

  t.equal((await login({})).ok, true, 'PLAIN logs in');
  const upgraded = (await store.get('localhost', 'carol'))!;
  t.same(Object.keys(upgraded.scram).sort(), ['SHA-1', 'SHA-256', 'SHA-512'], 'PLAIN added the missing families');
  t.same(upgraded.scram['SHA-1'], sha1, 'the existing credential is kept as it was');
  t.equal(upgraded.created, record.created, 'the rest of the record too');

  for (const mechanism of ['SCRAM-SHA-512', 'SCRAM-SHA-256-PLUS']) {
    const r = await login({ mechanism, cbType: mechanism.endsWith('-PLUS') ? 'tls-server-end-point' : undefined });
    t.same([r.ok, r.verified], [true, true], `${mechanism} works now`);
  }
});

t.test('unknown users still get a challenge, whatever the family', async (t) => {
  const r = await login({ user: 'nobody', mechanism: 'SCRAM-SHA-512' });
  t.same([r.ok, r.condition], [false, 'not-authorized'], 'answered like a wrong password, at the end');
});
