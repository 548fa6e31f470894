// PLAIN (RFC 4616) on its own: message syntax, SASLprep, authzid rules and the session's states.
import t from 'tap';
import { createSaslSession, type SaslBackend, type SaslResult } from '../../lib/sasl/index.js';

const secret = Buffer.alloc(32, 7);

/** Accepts exactly juliet / "r0m30 pässwörd"; records what it was asked. */
function backend(): SaslBackend & { calls: Array<[string, string]> } {
  const calls: Array<[string, string]> = [];
  return {
    calls,
    scramCredential: async () => undefined,
    verifyPassword: async (username, password) => {
      calls.push([username, password]);
      return username === 'juliet' && password === 'r0m30 pässwörd';
    },
  };
}

const msg = (s: string): Buffer => Buffer.from(s, 'utf8');

async function plain(data: Buffer | undefined, b: SaslBackend = backend()): Promise<SaslResult> {
  return createSaslSession('PLAIN', b, { secret })!.start(data);
}

t.test('right password', async (t) => {
  t.same(await plain(msg('\0juliet\0r0m30 pässwörd')), { kind: 'success', username: 'juliet' });
});

t.test('wrong password and unknown user give the same answer', async (t) => {
  t.same(await plain(msg('\0juliet\0nope')), { kind: 'failure', condition: 'not-authorized' });
  t.same(await plain(msg('\0nobody\0r0m30 pässwörd')), { kind: 'failure', condition: 'not-authorized' });
});

t.test('authzid', async (t) => {
  t.same(await plain(msg('juliet\0juliet\0r0m30 pässwörd')), { kind: 'success', username: 'juliet' }, 'naming oneself');
  t.same(await plain(msg('romeo\0juliet\0r0m30 pässwörd')), { kind: 'failure', condition: 'invalid-authzid' }, 'someone else');
  t.same(await plain(msg('\u0007\0juliet\0r0m30 pässwörd')), { kind: 'failure', condition: 'invalid-authzid' }, 'fails SASLprep');
  const b = backend();
  await plain(msg('romeo\0juliet\0r0m30 pässwörd'), b);
  t.same(b.calls, [], 'the password is not checked for a refused authzid');
});

t.test('SASLprep of authcid and password', async (t) => {
  const b = backend();
  // U+00AD is mapped to nothing, U+00A0 to a space.
  t.same(await plain(msg('\0jul\u00adiet\0r0m30\u00a0pässwörd'), b), { kind: 'success', username: 'juliet' });
  t.same(b.calls, [['juliet', 'r0m30 pässwörd']]);
  t.same(await plain(msg('\0juliet\0bad\u0007')), { kind: 'failure', condition: 'not-authorized' }, 'password fails SASLprep');
  t.same(await plain(msg('\0ju\u0007liet\0x')), { kind: 'failure', condition: 'not-authorized' }, 'authcid fails SASLprep');
});

t.test('malformed messages', async (t) => {
  const cases: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['no NUL', msg('juliet')],
    ['one NUL', msg('juliet\0r0m30')],
    ['three NULs', msg('\0juliet\0r0m30\0')],
    ['empty authcid', msg('\0\0r0m30')],
    ['empty password', msg('\0juliet\0')],
    ['not UTF-8', Buffer.concat([msg('\0juliet\0'), Buffer.from([0xc3, 0x28])])],
    ['truncated UTF-8', Buffer.concat([msg('\0juliet\0'), Buffer.from([0xe2, 0x82])])],
  ];
  for (const [name, data] of cases) {
    const r = await plain(data);
    t.equal(r.kind === 'failure' && r.condition, 'malformed-request', name);
  }
});

t.test('no initial response: empty challenge, then the response', async (t) => {
  const session = createSaslSession('PLAIN', backend(), { secret })!;
  t.same(await session.start(undefined), { kind: 'challenge', data: Buffer.alloc(0) });
  t.same(await session.step(msg('\0juliet\0r0m30 pässwörd')), { kind: 'success', username: 'juliet' });
});

t.test('steps after completion and out of order', async (t) => {
  const done = createSaslSession('PLAIN', backend(), { secret })!;
  t.equal((await done.start(msg('\0juliet\0r0m30 pässwörd'))).kind, 'success');
  t.same(await done.step(msg('\0juliet\0r0m30 pässwörd')), { kind: 'failure', condition: 'malformed-request', text: 'authentication already finished' });

  const failed = createSaslSession('PLAIN', backend(), { secret })!;
  t.equal((await failed.start(msg('\0juliet\0nope'))).kind, 'failure');
  t.equal((await failed.step(msg('\0juliet\0r0m30 pässwörd'))).kind, 'failure', 'no second try on one session');

  const fresh = createSaslSession('PLAIN', backend(), { secret })!;
  t.equal((await fresh.step(msg('\0juliet\0r0m30 pässwörd'))).kind, 'failure', 'step before start');

  const twice = createSaslSession('PLAIN', backend(), { secret })!;
  await twice.start(undefined);
  t.equal((await twice.start(msg('\0juliet\0r0m30 pässwörd'))).kind, 'failure', 'start twice');
});

t.test('backend failure -> temporary-auth-failure', async (t) => {
  const broken: SaslBackend = {
    scramCredential: async () => undefined,
    verifyPassword: async () => {
      throw new Error('storage down');
    },
  };
  t.same(await plain(msg('\0juliet\0x'), broken), { kind: 'failure', condition: 'temporary-auth-failure' });
});
