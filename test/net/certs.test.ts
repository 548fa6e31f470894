// Certificates: configured PEM files, the generated self-signed one, and SNI in real handshakes.
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import forge from 'node-forge';
import t, { type Test } from 'tap';
import { BootError } from '../../lib/errors.js';
import { createLogger, silentLogger } from '../../lib/log.js';
import { loadCertificates, nameMatches, type CertStore } from '../../lib/net/certs.js';

interface TestCert {
  certPem: string;
  keyPem: string;
  fingerprint: string;
}

/** A certificate with exactly these DNS names, signed by `issuer` or by itself. */
function makeCert(names: string[], o: { issuer?: { cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey }; ca?: boolean; cn?: string } = {}): TestCert & { forgeCert: forge.pki.Certificate; forgeKey: forge.pki.rsa.PrivateKey } {
  const pair = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const key = forge.pki.privateKeyFromPem(pair.privateKey);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(pair.publicKey);
  cert.serialNumber = '4' + Math.floor(Math.random() * 1e9).toString(16);
  cert.validity.notBefore = new Date(Date.now() - 3600_000);
  cert.validity.notAfter = new Date(Date.now() + 30 * 86400_000);
  const subject = [{ name: 'commonName', value: o.cn ?? names[0] ?? 'test' }];
  cert.setSubject(subject);
  cert.setIssuer(o.issuer ? o.issuer.cert.subject.attributes : subject);
  const exts: object[] = [{ name: 'basicConstraints', cA: Boolean(o.ca) }];
  if (names.length > 0) exts.push({ name: 'subjectAltName', altNames: names.map((value) => ({ type: 2, value })) });
  cert.setExtensions(exts);
  cert.sign(o.issuer?.key ?? key, forge.md.sha256.create());
  const certPem = forge.pki.certificateToPem(cert);
  return { certPem, keyPem: pair.privateKey, fingerprint: new X509Certificate(certPem).fingerprint256, forgeCert: cert, forgeKey: key };
}

function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'parley-certs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function captureLog() {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger({ level: 'debug', format: 'json', write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { log, lines };
}

function fingerprintOf(file: string): string {
  return new X509Certificate(readFileSync(file)).fingerprint256;
}

/** Handshake against the server; returns the certificate it presented and whether `ca` vouches for it. */
function handshake(port: number, servername: string | undefined, ca?: string): Promise<{ fingerprint: string; authorized: boolean; error?: string }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ port, host: '127.0.0.1', servername, ca, rejectUnauthorized: false });
    socket.once('secureConnect', () => {
      const peer = socket.getPeerX509Certificate();
      resolve({ fingerprint: peer?.fingerprint256 ?? '', authorized: socket.authorized, error: socket.authorizationError?.toString() });
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

async function tlsServer(t: Test, store: CertStore): Promise<number> {
  const server = tls.createServer(store.serverOptions(), (s) => s.end());
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

/** The way c2s uses the store: a plain TCP server wrapping each socket in a server TLSSocket (STARTTLS). */
async function starttlsServer(t: Test, store: CertStore): Promise<number> {
  const server = net.createServer((raw) => {
    const secured = new tls.TLSSocket(raw, { isServer: true, ...store.serverOptions() });
    secured.on('error', () => secured.destroy());
    secured.on('secure', () => secured.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

t.test('nameMatches: exact, case, trailing dot, wildcard of one label', async (t) => {
  t.ok(nameMatches('example.com', 'EXAMPLE.com.'));
  t.ok(nameMatches('*.example.com', 'conference.example.com'));
  t.notOk(nameMatches('*.example.com', 'example.com'));
  t.notOk(nameMatches('*.example.com', 'a.b.example.com'));
  t.notOk(nameMatches('*.example.com', 'a.example.org'));
  t.notOk(nameMatches('example.com', 'other.com'));
});

t.test('generates a self-signed certificate, stores it 0600, reuses it, replaces it', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'certs', 'selfsigned.pem');
  const { log, lines } = captureLog();
  const store = await loadCertificates({ certfiles: [], hosts: ['example.com', 'Chat.Example.org'], dataDir: dir, log });

  t.ok(existsSync(file), 'stored in the data directory');
  t.equal(statSync(file).mode & 0o777, 0o600, 'key file is private');
  t.equal(statSync(path.dirname(file)).mode & 0o777, 0o700, 'certs directory is private');
  const x509 = new X509Certificate(readFileSync(file));
  t.match(x509.subjectAltName, /DNS:example\.com/);
  t.match(x509.subjectAltName, /DNS:\*\.example\.com/, 'subdomains covered');
  t.match(x509.subjectAltName, /DNS:chat\.example\.org/);
  t.match(x509.subjectAltName, /DNS:\*\.chat\.example\.org/);
  t.match(x509.keyUsage ?? [], ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'serverAuth and clientAuth');
  t.ok(x509.verify(x509.publicKey), 'signature verifies');
  const days = (new Date(x509.validTo).getTime() - Date.now()) / 86400_000;
  t.ok(days > 360 && days <= 366, `valid for a year (${days.toFixed(1)} days)`);
  t.equal(x509.publicKey.asymmetricKeyDetails?.modulusLength, 2048);
  t.match(x509.toLegacyObject(), { asn1Curve: undefined }, 'an RSA key');
  const first = x509.fingerprint256;

  const warning = lines.find((l) => l.level === 'warn' && /self-signed/.test(String(l.msg)));
  t.ok(warning, 'warns about the self-signed certificate');
  t.equal(warning?.sha256, first, 'with its fingerprint');
  t.match(store.describe(), [{ file, selfSigned: true, names: ['example.com', '*.example.com', 'chat.example.org', '*.chat.example.org'] }]);

  const again = await loadCertificates({ certfiles: [], hosts: ['chat.example.org', 'example.com'], dataDir: dir, log: silentLogger });
  t.equal(fingerprintOf(file), first, 'reused on the next start');
  t.equal(again.describe()[0]!.selfSigned, true);

  await loadCertificates({ certfiles: [], hosts: ['example.com'], dataDir: dir, log: silentLogger });
  t.equal(fingerprintOf(file), first, 'a host removed: the stored one still covers the rest');

  await loadCertificates({ certfiles: [], hosts: ['example.com', 'new.example'], dataDir: dir, log: silentLogger });
  const changed = fingerprintOf(file);
  t.not(changed, first, 'a new host: regenerated');
  t.match(new X509Certificate(readFileSync(file)).subjectAltName, /DNS:new\.example/);
  t.equal(statSync(file).mode & 0o777, 0o600);

  const late = new Date(Date.now() + 360 * 86400_000);
  await loadCertificates({ certfiles: [], hosts: ['example.com', 'new.example'], dataDir: dir, log: silentLogger, now: late });
  const renewed = new X509Certificate(readFileSync(file));
  t.not(renewed.fingerprint256, changed, 'less than 7 days left: regenerated');
  t.ok(new Date(renewed.validTo).getTime() > late.getTime() + 300 * 86400_000, 'dated from the given now');

  writeFileSync(file, 'garbage');
  await loadCertificates({ certfiles: [], hosts: ['example.com'], dataDir: dir, log: silentLogger });
  t.doesNotThrow(() => fingerprintOf(file), 'a damaged file is replaced');
});

t.test('SNI picks among configured files, wildcard included; the rest gets the generated one', async (t) => {
  const dir = tempDir(t);
  const a = makeCert(['a.test']);
  const b = makeCert(['b.test', '*.wild.test']);
  // Key before certificate: order inside a file does not matter.
  writeFileSync(path.join(dir, 'a.pem'), a.keyPem + a.certPem);
  writeFileSync(path.join(dir, 'b.pem'), b.certPem + b.keyPem);
  const store = await loadCertificates({
    certfiles: [path.join(dir, 'a.pem'), path.join(dir, 'b.pem')],
    hosts: ['a.test', 'b.test', 'x.wild.test', 'self.test'],
    dataDir: dir,
    log: silentLogger,
  });
  const generatedFile = path.join(dir, 'certs', 'selfsigned.pem');
  const generated = readFileSync(generatedFile, 'utf8');
  const generatedFp = fingerprintOf(generatedFile);
  t.match(store.describe(), [
    { file: path.join(dir, 'a.pem'), names: ['a.test'], selfSigned: true },
    { file: path.join(dir, 'b.pem'), names: ['b.test', '*.wild.test'] },
    { file: generatedFile, names: ['self.test', '*.self.test'], selfSigned: true },
  ], 'only the uncovered host is in the generated certificate');
  t.equal(store.describe().length, 3);

  for (const [name, start] of [['tls.createServer', tlsServer], ['TLSSocket (STARTTLS)', starttlsServer]] as const) {
    const port = await start(t, store);
    t.match(await handshake(port, 'a.test', a.certPem), { fingerprint: a.fingerprint, authorized: true }, `${name}: exact name`);
    t.match(await handshake(port, 'B.TEST', b.certPem), { fingerprint: b.fingerprint, authorized: true }, `${name}: case-insensitive`);
    t.match(await handshake(port, 'x.wild.test', b.certPem), { fingerprint: b.fingerprint, authorized: true }, `${name}: wildcard`);
    t.match(await handshake(port, 'deep.x.wild.test'), { fingerprint: a.fingerprint }, `${name}: wildcard covers one label only`);
    t.match(await handshake(port, 'self.test', generated), { fingerprint: generatedFp, authorized: true }, `${name}: generated, trusted when pinned`);
    t.match(await handshake(port, 'upload.self.test', generated), { fingerprint: generatedFp, authorized: true }, `${name}: generated covers subdomains`);
    t.match(await handshake(port, 'unknown.example'), { fingerprint: a.fingerprint }, `${name}: unknown name gets the first host's`);
    t.match(await handshake(port, undefined), { fingerprint: a.fingerprint }, `${name}: no SNI gets the first host's`);
  }
  t.equal(store.secureContext('b.test'), store.secureContext('y.wild.test'), 'contexts are shared, not rebuilt');
});

t.test('hosts covered by the files (wildcards too) need no generated certificate', async (t) => {
  const dir = tempDir(t);
  const w = makeCert(['*.wild.test']);
  writeFileSync(path.join(dir, 'w.pem'), w.certPem + w.keyPem);
  const store = await loadCertificates({ certfiles: [path.join(dir, 'w.pem')], hosts: ['x.wild.test', 'y.wild.test'], dataDir: dir, log: silentLogger });
  t.equal(store.describe().length, 1);
  t.notOk(existsSync(path.join(dir, 'certs', 'selfsigned.pem')));
});

t.test('a chain in any order is served leaf first', async (t) => {
  const dir = tempDir(t);
  const ca = makeCert([], { ca: true, cn: 'Test CA' });
  const leaf = makeCert(['chain.test'], { issuer: { cert: ca.forgeCert, key: ca.forgeKey } });
  writeFileSync(path.join(dir, 'chain.pem'), ca.certPem + leaf.keyPem + leaf.certPem);
  const store = await loadCertificates({ certfiles: [path.join(dir, 'chain.pem')], hosts: ['chain.test'], dataDir: dir, log: silentLogger });
  t.match(store.describe(), [{ names: ['chain.test'], selfSigned: false }]);
  const port = await tlsServer(t, store);
  t.match(await handshake(port, 'chain.test', ca.certPem), { fingerprint: leaf.fingerprint, authorized: true }, 'verifies up to the CA');
});

t.test('invalid certificate files stop the boot with one line naming the file', async (t) => {
  const dir = tempDir(t);
  const a = makeCert(['a.test']);
  const b = makeCert(['b.test']);
  const cases: Array<[string, string | undefined, RegExp]> = [
    ['missing.pem', undefined, /cannot read it \(ENOENT\)/],
    ['only-cert.pem', a.certPem, /no private key/],
    ['only-key.pem', a.keyPem, /no certificate/],
    ['garbage.pem', 'hello\n', /no certificate/],
    ['mismatch.pem', a.certPem + b.keyPem, /private key does not match/],
    ['broken.pem', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' + a.keyPem, /cannot be parsed/],
    ['encrypted.pem', a.certPem + forge.pki.encryptRsaPrivateKey(forge.pki.privateKeyFromPem(a.keyPem), 'secret'), /encrypted/],
  ];
  for (const [name, content, reason] of cases) {
    const file = path.join(dir, name);
    if (content !== undefined) writeFileSync(file, content);
    const err = await loadCertificates({ certfiles: [file], hosts: ['a.test'], dataDir: dir, log: silentLogger }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, BootError, name);
    t.equal((err as BootError).code, 'CERT_INVALID', name);
    t.match((err as BootError).message, reason, name);
    t.ok((err as BootError).message.includes(file), `${name}: names the file`);
    t.notMatch((err as BootError).message, /\n/, `${name}: one line`);
  }
});
