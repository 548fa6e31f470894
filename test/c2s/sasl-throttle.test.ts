// Throttling of failed logins: per account (slowed, not locked: success resets it, and an address
// that logged in is trusted), per address (IPv6 by /64), the failure delay, and that a refused
// attempt never reaches the costly credential check. Clients on 127.0.0.2, 127.0.0.3, ... stand
// for different addresses.
import t from 'tap';
import { AuthThrottle, addressKey, describeWait, type ThrottleSettings } from '../../lib/auth/throttle.js';
import { createSaslSession, type SaslBackend } from '../../lib/sasl/index.js';
import { startServerWithAuth, tlsLogin, type TlsLoginOptions } from '../helpers/scram-client.js';

// ---------- the counters, on a fake clock ----------

const settings: ThrottleSettings = {
  ipFailures: 3, ipWindowMs: 3000, accountFailures: 2, accountWindowMs: 2000, trustForMs: 10_000, maxEntries: 100,
};

t.test('buckets: a burst, then one attempt per window/failures', async (t) => {
  let now = 0;
  const th = new AuthThrottle(() => now);
  t.equal(th.checkAccount('1.1.1.1', 'a@h', settings), undefined);
  th.failed('1.1.1.1', 'a@h', settings);
  th.failed('1.1.1.1', 'a@h', settings);
  t.same(th.checkAccount('2.2.2.2', 'a@h', settings), { scope: 'account', retryAfterMs: 1000 }, 'the account is throttled from anywhere');
  t.equal(th.checkAccount('2.2.2.2', 'b@h', settings), undefined, 'other accounts are not');
  now = 600;
  t.same(th.checkAccount('2.2.2.2', 'a@h', settings), { scope: 'account', retryAfterMs: 400 });
  now = 1000;
  t.equal(th.checkAccount('2.2.2.2', 'a@h', settings), undefined, 'one token back after window/failures');
  th.failed('2.2.2.2', 'a@h', settings);
  t.ok(th.checkAccount('2.2.2.2', 'a@h', settings), 'and taken again');
  now = 10_000;
  t.equal(th.checkAccount('2.2.2.2', 'a@h', settings), undefined, 'forgiven after the window');

  th.failed('3.3.3.3', 'x@h', settings);
  th.failed('3.3.3.3', 'y@h', settings);
  th.failed('3.3.3.3', undefined, settings);
  t.same(th.checkAddress('3.3.3.3', settings), { scope: 'address', retryAfterMs: 1000 }, 'the address is throttled for every account');
  t.same(th.checkAccount('3.3.3.3', 'z@h', settings)?.scope, 'address');
  th.succeeded('3.3.3.3', 'z@h', settings);
  t.ok(th.checkAddress('3.3.3.3', settings), 'a success does not clear the address');
});

t.test('a success resets the account and trusts its address', async (t) => {
  let now = 0;
  const th = new AuthThrottle(() => now);
  const settings2 = { ...settings, ipFailures: 100 };
  th.failed('1.1.1.1', 'a@h', settings2);
  th.succeeded('1.1.1.1', 'a@h', settings2);
  th.failed('9.9.9.9', 'a@h', settings2);
  t.equal(th.checkAccount('9.9.9.9', 'a@h', settings2), undefined, 'one failure after the reset, not two');
  th.failed('9.9.9.9', 'a@h', settings2);
  t.ok(th.checkAccount('9.9.9.9', 'a@h', settings2), 'the guesser is throttled');
  t.equal(th.checkAccount('1.1.1.1', 'a@h', settings2), undefined, 'the owner, from an address that logged in, is not');
  th.failed('1.1.1.1', 'a@h', settings2);
  th.failed('1.1.1.1', 'a@h', settings2);
  t.equal(th.checkAccount('1.1.1.1', 'a@h', settings2), undefined, 'typos from a trusted address do not lock the account');
  now = 10_001;
  t.ok(th.checkAccount('1.1.1.1', 'a@h', { ...settings2, accountWindowMs: 1e9 }), 'trust expires');
  t.equal(new AuthThrottle().checkAccount('1.1.1.1', 'a@h', { ...settings2, trustForMs: 0 }), undefined);
});

t.test('memory stays bounded', async (t) => {
  let now = 0;
  const th = new AuthThrottle(() => now);
  for (let i = 0; i < 1000; i++) th.failed(`10.0.${i >> 8}.${i & 255}`, `u${i}@h`, settings);
  t.ok(th.size.addresses <= settings.maxEntries && th.size.accounts <= settings.maxEntries, JSON.stringify(th.size));
  for (const ip of ['10.0.3.231', '10.0.0.0']) for (let i = 0; i < 2; i++) th.failed(ip, undefined, settings);
  t.ok(th.checkAddress('10.0.3.231', settings), 'a recent entry was kept: three failures in all');
  t.equal(th.checkAddress('10.0.0.0', settings), undefined, 'the oldest was forgotten: two failures only');
  now = 1e6;
  for (let i = 0; i < 1100; i++) th.failed('10.1.0.1', undefined, { ...settings, ipFailures: 1e6 });
  t.ok(th.size.addresses < settings.maxEntries, 'refilled buckets are dropped');
});

t.test('address keys', async (t) => {
  t.equal(addressKey('192.0.2.7'), '192.0.2.7');
  t.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7', 'IPv4-mapped IPv6 is the IPv4 address');
  t.equal(addressKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
  t.equal(addressKey('2001:db8:1:2::9'), '2001:db8:1:2::/64', 'one /64, whatever the interface id');
  t.equal(addressKey('2001:DB8:0001:0002:ffff::1'), '2001:db8:1:2::/64');
  t.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64');
  t.equal(addressKey('::1'), '0:0:0:0::/64');
  t.equal(addressKey('64:ff9b::192.0.2.7'), '64:ff9b:0:0::/64');
  t.not(addressKey('2001:db8:1:3::9'), addressKey('2001:db8:1:2::9'));
  t.equal(addressKey(undefined), 'unknown');
  t.equal(describeWait(400), '1 second');
  t.equal(describeWait(90_000), '90 seconds');
  t.equal(describeWait(30 * 60_000), '30 minutes');
  t.equal(describeWait(5 * 3_600_000), '5 hours');
});

t.test('a refused attempt never reaches the credential check', async (t) => {
  let checks = 0;
  const backend: SaslBackend = {
    scramCredential: async () => {
      checks++;
      return undefined;
    },
    verifyPassword: async () => {
      checks++;
      return false;
    },
  };
  const gate = () => ({ condition: 'temporary-auth-failure' as const, text: 'slow down' });
  const secret = Buffer.alloc(32);
  const plain = createSaslSession('PLAIN', backend, { secret, gate })!;
  t.same(await plain.start(Buffer.from('\0user\0pw')), { kind: 'failure', condition: 'temporary-auth-failure', text: 'slow down' });
  const scram = createSaslSession('SCRAM-SHA-256', backend, { secret, gate })!;
  t.same(await scram.start(Buffer.from('n,,n=user,r=abc')), { kind: 'failure', condition: 'temporary-auth-failure', text: 'slow down' });
  t.equal(checks, 0);

  const bad: string[] = [];
  const open = createSaslSession('PLAIN', backend, { secret, gate: () => undefined, onBadCredentials: (u) => bad.push(u) })!;
  t.equal((await open.start(Buffer.from('\0user\0pw'))).kind, 'failure');
  t.same([checks, bad], [1, ['user']], 'an admitted attempt is checked and its failure reported');
});

// ---------- over the wire ----------

const srv = await startServerWithAuth([
  '  throttle:',
  '    ip_failures: 4',
  '    ip_window: 8s',
  '    account_failures: 2',
  '    account_window: 2s',
  '    failure_delay: 0',
].join('\n'));
t.teardown(() => srv.close());
await srv.register('alice', 'right');
await srv.register('bob', 'right');
await srv.register('carol', 'right');

const login = (o: Partial<TlsLoginOptions>) =>
  tlsLogin({ port: srv.c2sPort, user: 'alice', password: 'right', mechanism: 'PLAIN', ...o });

let passwordChecks = 0;
const accounts = srv.server.accounts;
const verify = accounts.verifyPassword.bind(accounts);
accounts.verifyPassword = (...args) => {
  passwordChecks++;
  return verify(...args);
};

t.test('per account: refused beyond the limit, then one more try per window/failures', async (t) => {
  const from = '127.0.0.2';
  for (let i = 0; i < 2; i++) t.equal((await login({ user: 'bob', password: 'wrong', localAddress: from })).condition, 'not-authorized');
  const checks = passwordChecks;
  const refused = await login({ user: 'bob', localAddress: '127.0.0.3' });
  t.same([refused.ok, refused.condition], [false, 'temporary-auth-failure'], 'even the right password, from another address');
  t.match(refused.text, /^too many failed logins for this account; try again in \d+ seconds?$/);
  const scram = await login({ user: 'bob', mechanism: 'SCRAM-SHA-256', localAddress: '127.0.0.3' });
  t.same([scram.ok, scram.condition], [false, 'temporary-auth-failure'], 'SCRAM is refused at its first message too');
  t.equal(passwordChecks, checks, 'no password was checked while refused');
  t.equal((await login({ user: 'carol', localAddress: '127.0.0.3' })).ok, true, 'other accounts are not affected');
  await new Promise((r) => setTimeout(r, 1100));
  t.equal((await login({ user: 'bob', localAddress: '127.0.0.3' })).ok, true, 'after window/failures one try is allowed again');
  t.equal((await login({ user: 'bob', password: 'wrong', localAddress: '127.0.0.6' })).condition, 'not-authorized', 'the success reset the account');
  t.equal((await login({ user: 'bob', password: 'wrong', localAddress: '127.0.0.6' })).condition, 'not-authorized');
  t.equal((await login({ user: 'bob', localAddress: '127.0.0.6' })).condition, 'temporary-auth-failure');
});

t.test('the owner is not locked out by a guesser elsewhere', async (t) => {
  t.equal((await login({ user: 'alice', localAddress: '127.0.0.1' })).ok, true, 'the owner logs in once');
  for (let i = 0; i < 2; i++) await login({ user: 'alice', password: 'guess', localAddress: '127.0.0.4' });
  t.equal((await login({ user: 'alice', localAddress: '127.0.0.4' })).condition, 'temporary-auth-failure', 'the guesser is throttled');
  t.equal((await login({ user: 'alice', localAddress: '127.0.0.1' })).ok, true, 'the owner, from the address that logged in, is not');
});

t.test('per address: refused before the mechanism starts, for every account', async (t) => {
  const from = '127.0.0.5';
  for (const user of ['u1', 'u2', 'u3', 'u4']) {
    t.equal((await login({ user, password: 'x', mechanism: 'SCRAM-SHA-1', localAddress: from })).condition, 'not-authorized');
  }
  const refused = await login({ user: 'carol', localAddress: from });
  t.same([refused.ok, refused.condition], [false, 'temporary-auth-failure']);
  t.match(refused.text, /^too many failed logins from your address; try again in \d+ seconds?$/);
  t.equal((await login({ user: 'carol', localAddress: '127.0.0.7' })).ok, true, 'other addresses are not affected');
});

t.test('the failure delay', async (t) => {
  const slow = await startServerWithAuth('  throttle:\n    failure_delay: 400ms');
  t.teardown(() => slow.close());
  await slow.register('dave', 'right');
  let start = Date.now();
  const r = await tlsLogin({ port: slow.c2sPort, user: 'dave', password: 'wrong', mechanism: 'SCRAM-SHA-512' });
  t.equal(r.condition, 'not-authorized');
  t.ok(Date.now() - start >= 400, `a wrong password is answered after the delay (${Date.now() - start} ms)`);
  start = Date.now();
  const ok = await tlsLogin({ port: slow.c2sPort, user: 'dave', password: 'right', mechanism: 'PLAIN' });
  t.equal(ok.ok, true, 'a right one is not delayed');
});
