// Accounts over an in-memory map store: lifecycle, validation, what is stored, and logins through
// the SASL backend it hands to the stream.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import t from 'tap';
import { AccountError, Accounts, type AccountErrorCode, type AccountRecord } from '../lib/accounts.js';
import { createSaslSession, type SaslResult } from '../lib/sasl/index.js';
import type { ScramHash } from '../lib/sasl/scram.js';
import { MemoryMapStore } from './helpers/memory-map-store.js';

const secret = randomBytes(32);
const HOST = 'example.com';

function setup(o: { iterations?: number; hashes?: ScramHash[] } = {}): { store: MemoryMapStore<AccountRecord>; accounts: Accounts } {
  const store = new MemoryMapStore<AccountRecord>();
  return { store, accounts: new Accounts(store, { iterations: o.iterations ?? 4096, hashes: o.hashes ?? ['SHA-1', 'SHA-256'], secret }) };
}

/** The tap test object handed to a subtest callback. */
type Test = Parameters<Parameters<typeof t.test>[0]>[0];

async function rejectsCode(t: Test, p: Promise<unknown>, code: AccountErrorCode, what: string): Promise<void> {
  try {
    await p;
    t.fail(`${what}: expected AccountError(${code})`);
  } catch (err) {
    t.ok(err instanceof AccountError, `${what}: AccountError`);
    t.equal((err as AccountError).code, code, `${what}: ${code}`);
  }
}

/** A SCRAM login through the backend, with a client written from RFC 5802 §3. */
async function scramLogin(accounts: Accounts, mechanism: string, user: string, password: string): Promise<{ result: SaslResult; verified: boolean; serverFirst: string }> {
  const algo = ({ 'SCRAM-SHA-1': 'sha1', 'SCRAM-SHA-256': 'sha256', 'SCRAM-SHA-512': 'sha512' } as Record<string, string>)[mechanism]!;
  const session = createSaslSession(mechanism, accounts.saslBackend(HOST), { secret })!;
  const nonce = randomBytes(18).toString('base64');
  const bare = `n=${user},r=${nonce}`;
  const first = await session.start(Buffer.from(`n,,${bare}`));
  if (first.kind !== 'challenge') return { result: first, verified: false, serverFirst: '' };
  const sf = first.data.toString();
  const a = Object.fromEntries(sf.split(',').map((x) => [x[0], x.slice(2)]));
  const salted = pbkdf2Sync(password, Buffer.from(a.s!, 'base64'), Number(a.i), createHash(algo).digest().length, algo);
  const clientKey = createHmac(algo, salted).update('Client Key').digest();
  const withoutProof = `c=biws,r=${a.r}`;
  const authMessage = `${bare},${sf},${withoutProof}`;
  const sig = createHmac(algo, createHash(algo).update(clientKey).digest()).update(authMessage).digest();
  const proof = Buffer.from(clientKey.map((b, i) => b ^ sig[i]!)).toString('base64');
  const result = await session.step(Buffer.from(`${withoutProof},p=${proof}`));
  const expected = createHmac(algo, createHmac(algo, salted).update('Server Key').digest()).update(authMessage).digest('base64');
  return { result, verified: result.kind === 'success' && result.data?.toString() === `v=${expected}`, serverFirst: sf };
}

t.test('register, exists, list, verifyPassword', async (t) => {
  const { accounts } = setup();
  await accounts.register('juliet', HOST, 'r0m30');
  await accounts.register('romeo', HOST, 'jul13t');
  await accounts.register('benvolio', 'other.example', 'x');
  t.ok(await accounts.exists('juliet', HOST));
  t.notOk(await accounts.exists('juliet', 'other.example'), 'accounts are per host');
  t.notOk(await accounts.exists('nobody', HOST));
  t.same(await accounts.list(HOST), ['juliet', 'romeo']);
  t.same(await accounts.list('nowhere.example'), []);
  t.ok(await accounts.verifyPassword('juliet', HOST, 'r0m30'));
  t.notOk(await accounts.verifyPassword('juliet', HOST, 'R0M30'), 'password is case-sensitive');
  t.notOk(await accounts.verifyPassword('juliet', HOST, 'jul13t'), "another user's password");
  t.notOk(await accounts.verifyPassword('nobody', HOST, 'r0m30'), 'unknown user');
  t.notOk(await accounts.verifyPassword('a@b', HOST, 'r0m30'), 'invalid username');
  t.notOk(await accounts.verifyPassword('juliet', HOST, 'bad\u0007'), 'password failing SASLprep');
});

t.test('list is sorted', async (t) => {
  const { accounts } = setup();
  for (const u of ['mercutio', 'benvolio', 'tybalt', 'capulet']) await accounts.register(u, HOST, 'pw');
  t.same(await accounts.list(HOST), ['benvolio', 'capulet', 'mercutio', 'tybalt']);
});

t.test('duplicates', async (t) => {
  const { accounts } = setup();
  await accounts.register('juliet', HOST, 'one');
  await rejectsCode(t, accounts.register('juliet', HOST, 'two'), 'exists', 'same name');
  await rejectsCode(t, accounts.register('JULIET', HOST, 'two'), 'exists', 'same name after case folding');
  t.ok(await accounts.verifyPassword('juliet', HOST, 'one'), 'the first password stays');
  // Both start before either stores: the store's add decides, exactly one wins.
  const results = await Promise.allSettled([accounts.register('romeo', HOST, 'a'), accounts.register('romeo', HOST, 'b')]);
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'one concurrent registration wins');
  const lost = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  t.equal((lost?.reason as AccountError).code, 'exists');
});

t.test('nodeprep case folding', async (t) => {
  const { accounts } = setup();
  await accounts.register('Alice', HOST, 'pw');
  t.same(await accounts.list(HOST), ['alice']);
  t.ok(await accounts.exists('alice', HOST));
  t.ok(await accounts.exists('ALICE', HOST));
  t.ok(await accounts.verifyPassword('aLiCe', HOST, 'pw'));
  const r = await scramLogin(accounts, 'SCRAM-SHA-1', 'ALICE', 'pw');
  t.equal(r.result.kind, 'success', 'SCRAM with another case');
  await accounts.remove('ALICE', HOST);
  t.notOk(await accounts.exists('alice', HOST));
});

t.test('invalid usernames and passwords', async (t) => {
  const { accounts, store } = setup();
  for (const user of ['a@b', '', '"', 'a b', 'a/b', "o'neil", 'a:b', '<x>', 'a&b', 'x'.repeat(1024)]) {
    await rejectsCode(t, accounts.register(user, HOST, 'pw'), 'invalid-username', JSON.stringify(user.slice(0, 10)));
    t.notOk(await accounts.exists(user, HOST));
  }
  await rejectsCode(t, accounts.register('juliet', HOST, ''), 'invalid-password', 'empty');
  await rejectsCode(t, accounts.register('juliet', HOST, '\u00ad'), 'invalid-password', 'prepares to nothing');
  await rejectsCode(t, accounts.register('juliet', HOST, 'bad\u0007'), 'invalid-password', 'control character');
  await rejectsCode(t, accounts.register('juliet', HOST, '\u0627\u0031'), 'invalid-password', 'bidi violation');
  t.same(await store.keys(HOST), [], 'nothing was stored');
  await accounts.register('juliet', HOST, 'pw');
  await rejectsCode(t, accounts.setPassword('juliet', HOST, ''), 'invalid-password', 'setPassword empty');
  await rejectsCode(t, accounts.setPassword('a@b', HOST, 'x'), 'invalid-username', 'setPassword invalid name');
  await rejectsCode(t, accounts.remove('a@b', HOST), 'invalid-username', 'remove invalid name');
  t.ok(await accounts.verifyPassword('juliet', HOST, 'pw'));
});

t.test('setPassword: the old password stops working', async (t) => {
  const { accounts, store } = setup();
  await accounts.register('juliet', HOST, 'old');
  const before = await store.get(HOST, 'juliet');
  await accounts.setPassword('Juliet', HOST, 'new');
  t.notOk(await accounts.verifyPassword('juliet', HOST, 'old'));
  t.ok(await accounts.verifyPassword('juliet', HOST, 'new'));
  t.equal((await scramLogin(accounts, 'SCRAM-SHA-256', 'juliet', 'old')).result.kind, 'failure');
  t.equal((await scramLogin(accounts, 'SCRAM-SHA-256', 'juliet', 'new')).result.kind, 'success');
  const after = await store.get(HOST, 'juliet');
  t.equal(after?.created, before?.created, 'creation time kept');
  t.not(after?.scram['SHA-1']?.salt, before?.scram['SHA-1']?.salt, 'fresh salt');
  await rejectsCode(t, accounts.setPassword('nobody', HOST, 'x'), 'not-found', 'unknown user');
  t.notOk(await accounts.exists('nobody', HOST), 'setPassword does not create');
});

t.test('setPassword keeps other fields of the record', async (t) => {
  const { accounts, store } = setup();
  await accounts.register('juliet', HOST, 'old');
  const rec = (await store.get(HOST, 'juliet'))!;
  await store.set(HOST, 'juliet', { ...rec, disabled: false, phone: '+15550100' });
  await accounts.setPassword('juliet', HOST, 'new');
  const after = (await store.get(HOST, 'juliet'))!;
  t.equal(after.phone, '+15550100');
  t.equal(after.disabled, false);
});

t.test('remove', async (t) => {
  const { accounts } = setup();
  await accounts.register('juliet', HOST, 'pw');
  await accounts.remove('juliet', HOST);
  t.notOk(await accounts.exists('juliet', HOST));
  t.same(await accounts.list(HOST), []);
  t.notOk(await accounts.verifyPassword('juliet', HOST, 'pw'));
  await rejectsCode(t, accounts.remove('juliet', HOST), 'not-found', 'twice');
  await accounts.register('juliet', HOST, 'again');
  t.ok(await accounts.verifyPassword('juliet', HOST, 'again'), 'the name can be taken again');
});

t.test('the stored record holds no password', async (t) => {
  const { accounts, store } = setup({ hashes: ['SHA-1', 'SHA-256', 'SHA-512'] });
  const password = 'correct horse battery staple';
  await accounts.register('juliet', HOST, password);
  await accounts.setPassword('juliet', HOST, `${password}!`);
  const dump = store.dump();
  for (const form of [password, Buffer.from(password).toString('base64'), Buffer.from(password).toString('hex'), 'horse']) {
    t.notOk(dump.includes(form), `no ${form.slice(0, 12)}…`);
  }
  const rec = (await store.get(HOST, 'juliet'))!;
  t.same(Object.keys(rec).sort(), ['created', 'scram']);
  t.same(Object.keys(rec.scram).sort(), ['SHA-1', 'SHA-256', 'SHA-512']);
  for (const c of Object.values(rec.scram)) t.same(Object.keys(c!).sort(), ['iterations', 'salt', 'serverKey', 'storedKey']);
  t.type(rec.created, 'number');
});

t.test('iterations and hashes follow the configuration', async (t) => {
  const { accounts, store } = setup({ iterations: 5000, hashes: ['SHA-256'] });
  await accounts.register('juliet', HOST, 'pw');
  const rec = (await store.get(HOST, 'juliet'))!;
  t.same(Object.keys(rec.scram), ['SHA-256']);
  t.ok(rec.scram['SHA-256']!.iterations >= 5000);
  t.equal(Buffer.from(rec.scram['SHA-256']!.salt, 'base64').length, 16);
  const r = await scramLogin(accounts, 'SCRAM-SHA-1', 'juliet', 'pw');
  t.match(r.result, { kind: 'failure', condition: 'invalid-mechanism', text: /no SCRAM-SHA-1 credentials yet: use SCRAM-SHA-256/ }, 'no SHA-1 credential, so SHA-1 fails clearly');

  const defaults = new Accounts(new MemoryMapStore<AccountRecord>(), { secret });
  await defaults.register('juliet', HOST, 'pw');
  t.same(defaults.hashes, ['SHA-1', 'SHA-256', 'SHA-512'], 'SHA-1, SHA-256 and SHA-512 by default');
  t.ok(defaults.iterations >= 4096);

  t.throws(() => new Accounts(new MemoryMapStore<AccountRecord>(), { secret, iterations: 1000 }), RangeError, 'below 4096');
  t.throws(() => new Accounts(new MemoryMapStore<AccountRecord>(), { secret, hashes: [] }), RangeError, 'no hash');
  t.throws(() => new Accounts(new MemoryMapStore<AccountRecord>(), { secret, hashes: ['MD5' as ScramHash] }), RangeError, 'unknown hash');
});

t.test('saslBackend with createSaslSession, end to end', async (t) => {
  const { accounts } = setup({ iterations: 4500, hashes: ['SHA-1', 'SHA-256', 'SHA-512'] });
  await accounts.register('juliet', HOST, 'r0m30 pässwörd');
  for (const mech of ['SCRAM-SHA-1', 'SCRAM-SHA-256', 'SCRAM-SHA-512']) {
    const ok = await scramLogin(accounts, mech, 'juliet', 'r0m30 pässwörd');
    t.equal(ok.result.kind === 'success' && ok.result.username, 'juliet', `${mech}: success`);
    t.ok(ok.verified, `${mech}: the server proves it knows the credential`);
    const wrong = await scramLogin(accounts, mech, 'juliet', 'wrong');
    t.same(wrong.result, { kind: 'failure', condition: 'not-authorized' }, `${mech}: wrong password`);
    const unknown = await scramLogin(accounts, mech, 'nobody', 'wrong');
    t.same(unknown.result, wrong.result, `${mech}: unknown user fails the same way`);
    t.equal(unknown.serverFirst.split(',')[2], ok.serverFirst.split(',')[2], `${mech}: unknown user gets the configured iterations`);
    const invalid = await scramLogin(accounts, mech, 'a@b', 'wrong');
    t.equal(invalid.serverFirst.split(',')[2], 'i=4500', `${mech}: an impossible name is just unknown`);
    t.same(invalid.result, wrong.result);
  }
  const backend = accounts.saslBackend(HOST);
  t.equal(await backend.scramCredential('juliet', 'SHA-1').then((c) => c?.iterations), 4500);
  t.equal(await accounts.saslBackend('other.example').scramCredential('juliet', 'SHA-1'), undefined, 'per host');

  const plain = async (data: string) => createSaslSession('PLAIN', backend, { secret })!.start(Buffer.from(data));
  t.same(await plain('\0juliet\0r0m30 pässwörd'), { kind: 'success', username: 'juliet' });
  t.same(await plain('\0JULIET\0r0m30 pässwörd'), { kind: 'success', username: 'JULIET' }, 'the caller nodepreps the username');
  t.same(await plain('\0juliet\0wrong'), { kind: 'failure', condition: 'not-authorized' });
  t.same(await plain('\0nobody\0r0m30 pässwörd'), { kind: 'failure', condition: 'not-authorized' });
  t.same(await plain('\0a@b\0r0m30 pässwörd'), { kind: 'failure', condition: 'not-authorized' });
});
