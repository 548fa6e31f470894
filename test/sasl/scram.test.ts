// SCRAM server: the RFC test vectors, full exchanges against an independent client, hiding of
// unknown users, and the failure condition of every malformed message.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import t from 'tap';
import {
  SCRAM_MECHANISMS, createSaslSession, type ChannelBinding, type SaslBackend, type SaslResult, type SaslSession,
} from '../../lib/sasl/index.js';
import { SaslPrepError, deriveScramCredential, saslprep, type ScramCredential, type ScramHash } from '../../lib/sasl/scram.js';

const secret = Buffer.from('a server secret for the tests, 32b');

/** A backend over fixed credentials: user -> hash -> credential. */
function backendOf(creds: Record<string, Partial<Record<ScramHash, ScramCredential>>>, iterations?: number): SaslBackend {
  return {
    iterations,
    scramCredential: async (username, hash) => creds[username]?.[hash],
    verifyPassword: async () => false,
  };
}

async function backendWith(user: string, password: string, iterations = 4096): Promise<SaslBackend> {
  const scram: Partial<Record<ScramHash, ScramCredential>> = {};
  for (const h of ['SHA-1', 'SHA-256', 'SHA-512'] as const) scram[h] = await deriveScramCredential(password, h, iterations);
  return backendOf({ [user]: scram }, iterations);
}

const text = (r: SaslResult): string => (r.kind === 'failure' ? `failure:${r.condition}` : (r.data ?? Buffer.alloc(0)).toString('utf8'));
const buf = (s: string): Buffer => Buffer.from(s, 'utf8');

// ---------- an independent client, written from RFC 5802 §3 ----------

const ALGO: Record<ScramHash, string> = { 'SHA-1': 'sha1', 'SHA-256': 'sha256', 'SHA-512': 'sha512' };

interface ClientOptions {
  gs2?: string;
  nonce?: string;
  /** Channel binding data appended to the GS2 header in `c=`. */
  cbData?: Buffer;
}

class Client {
  readonly nonce: string;
  readonly gs2: string;
  private bare = '';
  private serverSignature = '';

  constructor(readonly hash: ScramHash, readonly user: string, readonly password: string, readonly o: ClientOptions = {}) {
    this.nonce = o.nonce ?? randomBytes(18).toString('base64');
    this.gs2 = o.gs2 ?? 'n,,';
  }

  first(): Buffer {
    this.bare = `n=${this.user.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${this.nonce}`;
    return buf(this.gs2 + this.bare);
  }

  /** The client-final message; `tweak` may alter the part without proof before it is signed. */
  final(serverFirst: Buffer, tweak?: { c?: string; r?: string; ext?: string }): Buffer {
    const sf = serverFirst.toString('utf8');
    const attrs = Object.fromEntries(sf.split(',').map((a) => [a[0], a.slice(2)]));
    const algo = ALGO[this.hash];
    const salted = pbkdf2Sync(this.password, Buffer.from(attrs.s!, 'base64'), Number(attrs.i), createHash(algo).digest().length, algo);
    const clientKey = createHmac(algo, salted).update('Client Key').digest();
    const storedKey = createHash(algo).update(clientKey).digest();
    const c = tweak?.c ?? Buffer.concat([buf(this.gs2), this.o.cbData ?? Buffer.alloc(0)]).toString('base64');
    const withoutProof = `c=${c},r=${tweak?.r ?? attrs.r}${tweak?.ext ? ',' + tweak.ext : ''}`;
    const authMessage = `${this.bare},${sf},${withoutProof}`;
    const signature = createHmac(algo, storedKey).update(authMessage).digest();
    const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!));
    const serverKey = createHmac(algo, salted).update('Server Key').digest();
    this.serverSignature = createHmac(algo, serverKey).update(authMessage).digest('base64');
    return buf(`${withoutProof},p=${proof.toString('base64')}`);
  }

  verify(data: Buffer | undefined): boolean {
    return data?.toString('utf8') === `v=${this.serverSignature}`;
  }
}

async function exchange(session: SaslSession, client: Client): Promise<{ first: SaslResult; final?: SaslResult }> {
  const first = await session.start(client.first());
  if (first.kind !== 'challenge') return { first };
  return { first, final: await session.step(client.final(first.data)) };
}

const mechOf = (hash: ScramHash): string => Object.entries(SCRAM_MECHANISMS).find(([, h]) => h === hash)![0];

// ---------- RFC vectors ----------

t.test('RFC 5802 §5 SCRAM-SHA-1 example', async (t) => {
  const cred = await deriveScramCredential('pencil', 'SHA-1', 4096, Buffer.from('QSXCR+Q6sek8bf92', 'base64'));
  const session = createSaslSession('SCRAM-SHA-1', backendOf({ user: { 'SHA-1': cred } }), { secret, nonce: () => '3rfcNHYJY1ZVvWVs7j' })!;
  const first = await session.start(buf('n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL'));
  t.equal(first.kind, 'challenge');
  t.equal(text(first), 'r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096');
  const final = await session.step(buf('c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts='));
  t.equal(final.kind, 'success');
  t.equal(final.kind === 'success' && final.username, 'user');
  t.equal(text(final), 'v=rmF9pqV8S7suAoZWja4dJRkFsKQ=');
});

t.test('RFC 7677 §3 SCRAM-SHA-256 example', async (t) => {
  const cred = await deriveScramCredential('pencil', 'SHA-256', 4096, Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'));
  const session = createSaslSession('SCRAM-SHA-256', backendOf({ user: { 'SHA-256': cred } }), { secret, nonce: () => '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0' })!;
  const first = await session.start(buf('n,,n=user,r=rOprNGfwEbeRWgbNEkqO'));
  t.equal(text(first), 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096');
  const final = await session.step(buf('c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ='));
  t.equal(final.kind, 'success');
  t.equal(text(final), 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
});

// ---------- full exchanges ----------

t.test('full exchange for every hash; the server proves itself', async (t) => {
  const backend = await backendWith('juliet', 'r0m30 pässwörd');
  for (const hash of ['SHA-1', 'SHA-256', 'SHA-512'] as const) {
    const client = new Client(hash, 'juliet', 'r0m30 pässwörd');
    const { first, final } = await exchange(createSaslSession(mechOf(hash), backend, { secret })!, client);
    t.equal(first.kind, 'challenge', hash);
    const serverNonce = text(first).split(',')[0]!.slice(2 + client.nonce.length);
    t.ok(Buffer.from(serverNonce, 'base64').length >= 18, `${hash}: server nonce has at least 18 random bytes`);
    t.equal(final?.kind, 'success', hash);
    t.equal(final?.kind === 'success' && final.username, 'juliet');
    t.ok(client.verify(final?.kind === 'success' ? final.data : undefined), `${hash}: server signature verifies`);
  }
});

t.test('server nonces differ between sessions', async (t) => {
  const backend = await backendWith('juliet', 'pw');
  const nonces = new Set<string>();
  for (let i = 0; i < 5; i++) {
    const r = await createSaslSession('SCRAM-SHA-1', backend, { secret })!.start(buf('n,,n=juliet,r=abc'));
    nonces.add(text(r).split(',')[0]!);
  }
  t.equal(nonces.size, 5);
});

t.test('no initial response: empty challenge, then client-first', async (t) => {
  const backend = await backendWith('juliet', 'pw');
  const session = createSaslSession('SCRAM-SHA-256', backend, { secret })!;
  const empty = await session.start(undefined);
  t.same(empty, { kind: 'challenge', data: Buffer.alloc(0) });
  const client = new Client('SHA-256', 'juliet', 'pw');
  const first = await session.step(client.first());
  t.equal(first.kind, 'challenge');
  const final = await session.step(client.final((first as { data: Buffer }).data));
  t.equal(final.kind, 'success');
});

t.test('escaped usernames and SASLprep of the username', async (t) => {
  const backend = await backendWith('a,b=c', 'pw');
  const { final } = await exchange(createSaslSession('SCRAM-SHA-1', backend, { secret })!, new Client('SHA-1', 'a,b=c', 'pw'));
  t.equal(final?.kind === 'success' && final.username, 'a,b=c');
  // U+00AD (soft hyphen) is mapped to nothing by SASLprep.
  const backend2 = await backendWith('romeo', 'pw');
  const r = await exchange(createSaslSession('SCRAM-SHA-1', backend2, { secret })!, new Client('SHA-1', 'ro\u00admeo', 'pw'));
  t.equal(r.final?.kind === 'success' && r.final.username, 'romeo');
});

t.test('wrong password -> not-authorized, only at the end', async (t) => {
  const backend = await backendWith('juliet', 'right');
  const { first, final } = await exchange(createSaslSession('SCRAM-SHA-256', backend, { secret })!, new Client('SHA-256', 'juliet', 'wrong'));
  t.equal(first.kind, 'challenge');
  t.same(final, { kind: 'failure', condition: 'not-authorized' });
});

t.test('unknown user is indistinguishable from a wrong password until the end', async (t) => {
  const backend = await backendWith('juliet', 'right', 4096);
  const shape = (r: SaslResult, clientNonce: string) => {
    const [rr, s, i, ...rest] = text(r).split(',');
    return {
      attrs: [rr!.slice(0, 2), s!.slice(0, 2), i!.slice(0, 2)],
      serverNonceLength: rr!.length - 2 - clientNonce.length,
      saltLength: Buffer.from(s!.slice(2), 'base64').length,
      saltTextLength: s!.length,
      iterations: i,
      rest,
    };
  };
  for (const hash of ['SHA-1', 'SHA-256', 'SHA-512'] as const) {
    const known = new Client(hash, 'juliet', 'wrong');
    const unknown = new Client(hash, 'nobody', 'wrong');
    const k = await exchange(createSaslSession(mechOf(hash), backend, { secret })!, known);
    const u = await exchange(createSaslSession(mechOf(hash), backend, { secret })!, unknown);
    t.same(shape(u.first, unknown.nonce), shape(k.first, known.nonce), `${hash}: same server-first shape`);
    t.same(u.final, k.final, `${hash}: same failure`);
    t.same(u.final, { kind: 'failure', condition: 'not-authorized' });
  }
  // The fake salt is stable per user (a changing salt would give the game away) and per-user.
  const salt = async (user: string, s: Buffer = secret) =>
    text(await createSaslSession('SCRAM-SHA-1', backend, { secret: s })!.start(buf(`n,,n=${user},r=abc`))).split(',')[1];
  t.equal(await salt('nobody'), await salt('nobody'));
  t.not(await salt('nobody'), await salt('someone'));
  t.not(await salt('nobody'), await salt('nobody', randomBytes(32)), 'salt depends on the secret');
  // Even the right password of some other account does not let an unknown name in.
  const r = await exchange(createSaslSession('SCRAM-SHA-1', backend, { secret })!, new Client('SHA-1', 'nobody', 'right'));
  t.same(r.final, { kind: 'failure', condition: 'not-authorized' });
});

t.test('iterations announced for unknown users follow the configuration', async (t) => {
  const fromBackend = await createSaslSession('SCRAM-SHA-1', backendOf({}, 10000), { secret })!.start(buf('n,,n=x,r=abc'));
  t.match(text(fromBackend), /,i=10000$/);
  const fromOption = await createSaslSession('SCRAM-SHA-1', backendOf({}, 10000), { secret, iterations: 12000 })!.start(buf('n,,n=x,r=abc'));
  t.match(text(fromOption), /,i=12000$/);
  const fallback = await createSaslSession('SCRAM-SHA-1', backendOf({}), { secret })!.start(buf('n,,n=x,r=abc'));
  t.match(text(fallback), /,i=4096$/);
});

t.test('a credential stored for another hash only counts as unknown', async (t) => {
  const cred = await deriveScramCredential('pw', 'SHA-1', 4096);
  const backend = backendOf({ juliet: { 'SHA-1': cred } });
  const r = await exchange(createSaslSession('SCRAM-SHA-256', backend, { secret })!, new Client('SHA-256', 'juliet', 'pw'));
  t.same(r.final, { kind: 'failure', condition: 'not-authorized' });
});

// ---------- malformed messages ----------

t.test('malformed client-first messages', async (t) => {
  const backend = await backendWith('user', 'pw');
  const cases: Array<[string, Buffer | string, string]> = [
    ['empty', '', 'malformed-request'],
    ['no GS2 header', 'n=user,r=abc', 'malformed-request'],
    ['one comma', 'n,n=user,r=abc', 'malformed-request'],
    ['bad flag', 'x,,n=user,r=abc', 'malformed-request'],
    ['bad cb-name', 'p=tls_unique,,n=user,r=abc', 'malformed-request'],
    ['bad authzid attribute', 'n,b=user,n=user,r=abc', 'malformed-request'],
    ['empty authzid', 'n,a=,n=user,r=abc', 'malformed-request'],
    ['missing username', 'n,,r=abc', 'malformed-request'],
    ['empty username', 'n,,n=,r=abc', 'malformed-request'],
    ['missing nonce', 'n,,n=user', 'malformed-request'],
    ['empty nonce', 'n,,n=user,r=', 'malformed-request'],
    ['nonce with a space', 'n,,n=user,r=a b', 'malformed-request'],
    ['non-ASCII nonce', 'n,,n=user,r=abé', 'malformed-request'],
    ['attributes swapped', 'n,,r=abc,n=user', 'malformed-request'],
    ['bad escape', 'n,,n=us=2Xer,r=abc', 'malformed-request'],
    ['lowercase escape', 'n,,n=us=2cer,r=abc', 'malformed-request'],
    ['bare =', 'n,,n=us=er,r=abc', 'malformed-request'],
    ['trailing =', 'n,,n=user=,r=abc', 'malformed-request'],
    ['NUL in username', 'n,,n=us\0er,r=abc', 'malformed-request'],
    ['mandatory extension first', 'n,,m=ext,n=user,r=abc', 'malformed-request'],
    ['mandatory extension later', 'n,,n=user,r=abc,m=ext', 'malformed-request'],
    ['bad extension', 'n,,n=user,r=abc,xyz', 'malformed-request'],
    ['not UTF-8', Buffer.from([0x6e, 0x2c, 0x2c, 0x6e, 0x3d, 0xff, 0xfe, 0x2c, 0x72, 0x3d, 0x61]), 'malformed-request'],
    ['overlong UTF-8', Buffer.concat([buf('n,,n='), Buffer.from([0xc0, 0xaf]), buf(',r=abc')]), 'malformed-request'],
    ['username fails SASLprep', 'n,,n=us\u0007er,r=abc', 'not-authorized'],
    ['username prepares to nothing', 'n,,n=\u00ad,r=abc', 'not-authorized'],
    ['authzid of someone else', 'n,a=admin,n=user,r=abc', 'invalid-authzid'],
    ['authzid fails SASLprep', 'n,a=us\u0007er,n=user,r=abc', 'invalid-authzid'],
    ['channel binding without -PLUS', 'p=tls-exporter,,n=user,r=abc', 'malformed-request'],
  ];
  for (const [name, msg, condition] of cases) {
    const session = createSaslSession('SCRAM-SHA-1', backend, { secret })!;
    const r = await session.start(typeof msg === 'string' ? buf(msg) : msg);
    t.equal(r.kind === 'failure' && r.condition, condition, name);
    t.equal(text(await session.step(buf('c=biws'))), 'failure:malformed-request', `${name}: no step after failure`);
  }
});

t.test('accepted client-first variants', async (t) => {
  const backend = await backendWith('user', 'pw');
  for (const gs2 of ['n,,', 'y,,', 'n,a=user,', 'y,a=user,']) {
    const client = new Client('SHA-1', 'user', 'pw', { gs2 });
    const r = await exchange(createSaslSession('SCRAM-SHA-1', backend, { secret })!, client);
    t.equal(r.final?.kind, 'success', gs2);
    t.ok(client.verify(r.final?.kind === 'success' ? r.final.data : undefined), `${gs2}: verifies`);
  }
  // Unknown extensions are ignored; they still count in the AuthMessage.
  const session = createSaslSession('SCRAM-SHA-1', backend, { secret })!;
  const first = await session.start(buf('n,,n=user,r=abc,x=whatever'));
  t.equal(first.kind, 'challenge');
});

t.test('malformed or wrong client-final messages', async (t) => {
  const backend = await backendWith('user', 'pw');
  const run = async (final: (c: Client, sf: Buffer) => Buffer | string): Promise<SaslResult> => {
    const client = new Client('SHA-256', 'user', 'pw');
    const session = createSaslSession('SCRAM-SHA-256', backend, { secret })!;
    const first = await session.start(client.first());
    if (first.kind !== 'challenge') return first;
    const msg = final(client, first.data);
    const r = await session.step(typeof msg === 'string' ? buf(msg) : msg);
    t.equal(text(await session.step(client.final(first.data))), 'failure:malformed-request', 'no step after completion');
    return r;
  };
  const good = (c: Client, sf: Buffer) => c.final(sf).toString('utf8');
  const cond = (r: SaslResult) => (r.kind === 'failure' ? r.condition : r.kind);
  t.equal(cond(await run((c, sf) => c.final(sf))), 'success', 'the untouched message succeeds');
  t.equal(cond(await run(() => '')), 'malformed-request', 'empty');
  t.equal(cond(await run((c, sf) => good(c, sf).replace(/,p=.*$/, ''))), 'malformed-request', 'missing proof');
  t.equal(cond(await run((c, sf) => good(c, sf).replace(/^c=biws,/, ''))), 'malformed-request', 'missing c=');
  t.equal(cond(await run((c, sf) => good(c, sf).replace(/,r=[^,]*/, ''))), 'malformed-request', 'missing r=');
  t.equal(cond(await run((c, sf) => good(c, sf).replace(/p=/, 'p=!'))), 'malformed-request', 'proof not base64');
  t.equal(cond(await run((c, sf) => good(c, sf).replace(/p=.*/, 'p='))), 'malformed-request', 'empty proof');
  t.equal(cond(await run((c, sf) => good(c, sf).replace('c=biws', 'c=bi!ws'))), 'malformed-request', 'c= not base64');
  t.equal(cond(await run((c, sf) => `${good(c, sf)},x=1`)), 'malformed-request', 'proof not last');
  t.equal(cond(await run((c, sf) => c.final(sf, { ext: 'm=1' }))), 'malformed-request', 'mandatory extension');
  t.equal(cond(await run((c, sf) => c.final(sf, { ext: 'x=1' }))), 'success', 'unknown extension, signed');
  t.equal(cond(await run((c, sf) => c.final(sf, { r: `${c.nonce}forged` }))), 'malformed-request', 'nonce mismatch');
  t.equal(cond(await run((c, sf) => c.final(sf, { r: c.nonce }))), 'malformed-request', 'client nonce only');
  t.equal(cond(await run((c, sf) => c.final(sf, { c: buf('y,,').toString('base64') }))), 'malformed-request', 'c= of another GS2 header');
  t.equal(cond(await run((c, sf) => c.final(sf, { c: '' }))), 'malformed-request', 'empty c=');
  t.equal(cond(await run((c, sf) => c.final(sf, { c: buf('n,,extra').toString('base64') }))), 'not-authorized', 'c= with binding data not negotiated');
  t.equal(cond(await run((c, sf) => good(c, sf).replace(/p=.*/, `p=${randomBytes(32).toString('base64')}`))), 'not-authorized', 'wrong proof');
  t.equal(cond(await run((c, sf) => good(c, sf).replace(/p=.*/, `p=${randomBytes(20).toString('base64')}`))), 'not-authorized', 'proof of the wrong length');
  t.equal(cond(await run((c, sf) => Buffer.concat([c.final(sf), Buffer.from([0xff])]))), 'malformed-request', 'not UTF-8');
});

t.test('steps out of order', async (t) => {
  const backend = await backendWith('user', 'pw');
  const fresh = createSaslSession('SCRAM-SHA-1', backend, { secret })!;
  t.equal(text(await fresh.step(buf('n,,n=user,r=abc'))), 'failure:malformed-request', 'step before start');
  const twice = createSaslSession('SCRAM-SHA-1', backend, { secret })!;
  await twice.start(buf('n,,n=user,r=abc'));
  t.equal(text(await twice.start(buf('n,,n=user,r=abc'))), 'failure:malformed-request', 'start twice');
  const client = new Client('SHA-1', 'user', 'pw');
  const done = createSaslSession('SCRAM-SHA-1', backend, { secret })!;
  const first = await done.start(client.first());
  const finalMsg = client.final((first as { data: Buffer }).data);
  t.equal((await done.step(finalMsg)).kind, 'success');
  t.equal(text(await done.step(finalMsg)), 'failure:malformed-request', 'replay after success');
  t.equal(text(await done.step(Buffer.alloc(0))), 'failure:malformed-request', 'empty response after success');
});

t.test('backend failure -> temporary-auth-failure', async (t) => {
  const backend: SaslBackend = {
    scramCredential: async () => {
      throw new Error('storage down');
    },
    verifyPassword: async () => false,
  };
  const r = await createSaslSession('SCRAM-SHA-1', backend, { secret })!.start(buf('n,,n=user,r=abc'));
  t.same(r, { kind: 'failure', condition: 'temporary-auth-failure' });
});

// ---------- mechanism selection and channel binding ----------

t.test('mechanism names', async (t) => {
  const backend = backendOf({});
  t.same(SCRAM_MECHANISMS, { 'SCRAM-SHA-1': 'SHA-1', 'SCRAM-SHA-256': 'SHA-256', 'SCRAM-SHA-512': 'SHA-512' });
  for (const m of ['DIGEST-MD5', 'scram-sha-1', 'SCRAM-SHA-384', 'SCRAM-SHA-1-PLUS', 'PLAIN-PLUS', 'toString', '']) {
    t.equal(createSaslSession(m, backend, { secret }), undefined, m);
  }
  for (const m of ['PLAIN', 'SCRAM-SHA-1', 'SCRAM-SHA-256', 'SCRAM-SHA-512']) t.ok(createSaslSession(m, backend, { secret }), m);
});

t.test('channel binding through the -PLUS mechanisms', async (t) => {
  const backend = await backendWith('user', 'pw');
  const exporter = randomBytes(32);
  const channelBinding: ChannelBinding = { data: (type) => (type === 'tls-exporter' ? exporter : undefined) };
  const plus = () => createSaslSession('SCRAM-SHA-256-PLUS', backend, { secret, channelBinding })!;
  t.ok(plus(), 'offered when binding data is available');

  const good = new Client('SHA-256', 'user', 'pw', { gs2: 'p=tls-exporter,,', cbData: exporter });
  const ok = await exchange(plus(), good);
  t.equal(ok.final?.kind, 'success', 'bound to the right channel');
  t.ok(good.verify(ok.final?.kind === 'success' ? ok.final.data : undefined));

  const mitm = await exchange(plus(), new Client('SHA-256', 'user', 'pw', { gs2: 'p=tls-exporter,,', cbData: randomBytes(32) }));
  t.same(mitm.final, { kind: 'failure', condition: 'not-authorized', text: 'channel binding data differs' }, 'another channel');

  const unsupported = await plus().start(new Client('SHA-256', 'user', 'pw', { gs2: 'p=tls-unique,,' }).first());
  t.equal(text(unsupported), 'failure:malformed-request', 'unsupported binding type');

  const unbound = await plus().start(new Client('SHA-256', 'user', 'pw').first());
  t.equal(text(unbound), 'failure:malformed-request', '-PLUS without binding');

  // The same connection offers the plain mechanism too: a `y` there means -PLUS was stripped.
  const plain = createSaslSession('SCRAM-SHA-256', backend, { secret, channelBinding })!;
  const downgrade = await plain.start(new Client('SHA-256', 'user', 'pw', { gs2: 'y,,' }).first());
  t.equal(text(downgrade), 'failure:not-authorized', 'downgrade detected');
  const noBinding = await exchange(createSaslSession('SCRAM-SHA-256', backend, { secret, channelBinding })!, new Client('SHA-256', 'user', 'pw'));
  t.equal(noBinding.final?.kind, 'success', 'a client without binding support may still use the plain mechanism');
});

// ---------- primitives ----------

t.test('saslprep', async (t) => {
  t.equal(saslprep('I\u00adX'), 'IX', 'soft hyphen mapped to nothing');
  t.equal(saslprep('user'), 'user');
  t.equal(saslprep('USER'), 'USER', 'case preserved');
  t.equal(saslprep('\u00aa'), 'a', 'NFKC');
  t.equal(saslprep('\u2168'), 'IX', 'NFKC');
  t.equal(saslprep('a\u00a0b'), 'a b', 'non-ASCII space mapped to space');
  t.throws(() => saslprep('\u0007'), SaslPrepError, 'control character');
  t.throws(() => saslprep('\u0627\u0031'), SaslPrepError, 'bidi rule');
});

t.test('deriveScramCredential', async (t) => {
  const a = await deriveScramCredential('pw', 'SHA-256', 4096);
  const b = await deriveScramCredential('pw', 'SHA-256', 4096);
  t.equal(Buffer.from(a.salt, 'base64').length, 16, '16-byte salt');
  t.not(a.salt, b.salt, 'random salt');
  t.equal(a.iterations, 4096);
  t.equal(Buffer.from(a.storedKey, 'base64').length, 32);
  t.equal(Buffer.from((await deriveScramCredential('pw', 'SHA-512', 4096)).serverKey, 'base64').length, 64);
  const salt = randomBytes(16);
  t.same(await deriveScramCredential('I\u00adX', 'SHA-1', 4096, salt), await deriveScramCredential('IX', 'SHA-1', 4096, salt), 'password is SASLprepped');
  await t.rejects(deriveScramCredential('\u0007', 'SHA-1', 4096), SaslPrepError);
  await t.rejects(deriveScramCredential('pw', 'SHA-1', 0), RangeError);
});
