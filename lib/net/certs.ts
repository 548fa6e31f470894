// TLS certificates: the configured PEM files, plus one self-signed certificate for the hosts none
// of them covers, so a fresh install speaks TLS from the first start. Contexts are built once and
// shared by every connection: creating a SecureContext per socket would parse the key each time
// and cost memory per session.
import {
  createPrivateKey,
  generateKeyPair,
  randomBytes,
  sign as cryptoSign,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { chmod, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import forge from 'node-forge';
import { BootError } from '../errors.js';
import type { Logger } from '../log.js';

export interface CertStore {
  /** Secure context for a TLS server: chooses by SNI servername among loaded certificates (exact SAN/CN match, then wildcard `*.example.com` matching one label), falling back to the default. */
  secureContext(servername?: string): tls.SecureContext;
  /** Options to pass to tls.createServer / new TLSSocket({ isServer: true, ... }) including SNICallback. */
  serverOptions(): tls.TlsOptions;
  /** Hosts covered by each loaded certificate, for logs. */
  describe(): Array<{ file: string; names: string[]; notAfter: Date; selfSigned: boolean }>;
}

export interface LoadCertificatesOptions {
  certfiles: string[];
  hosts: string[];
  dataDir: string;
  log: Logger;
  now?: Date;
}

/** Where the generated certificate lives, relative to the data directory. */
export const SELF_SIGNED_FILE = path.join('certs', 'selfsigned.pem');

const DAY_MS = 24 * 60 * 60 * 1000;
/** A generated certificate this close to expiry is replaced at start rather than reused. */
const RENEW_BEFORE_MS = 7 * DAY_MS;
const SELF_SIGNED_VALIDITY_MS = 365 * DAY_MS;
const MIN_TLS_VERSION = 'TLSv1.2';

interface LoadedCert {
  file: string;
  names: string[];
  leaf: X509Certificate;
  key: KeyObject;
  keyPem: string;
  chainPem: string;
  context: tls.SecureContext;
  selfSigned: boolean;
}

const generateKeyPairAsync = promisify(generateKeyPair);

/** Lowercase, without a trailing root dot: the form names are compared in. */
function normalizeName(name: string): string {
  return name.trim().toLowerCase().replace(/\.$/, '');
}

/** Does a certificate name (possibly `*.example.com`) cover this host? A wildcard stands for exactly one label. */
export function nameMatches(pattern: string, host: string): boolean {
  const p = normalizeName(pattern);
  const h = normalizeName(host);
  if (p === h) return true;
  if (!p.startsWith('*.')) return false;
  const dot = h.indexOf('.');
  return dot > 0 && h.slice(dot + 1) === p.slice(2);
}

function splitPem(text: string): Array<{ label: string; pem: string }> {
  const blocks: Array<{ label: string; pem: string }> = [];
  const re = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;
  for (const m of text.matchAll(re)) blocks.push({ label: m[1]!, pem: m[0] + '\n' });
  return blocks;
}

/** DNS and IP names of a certificate: its subjectAltName, or its CN when it has no SAN (old style). */
function certificateNames(cert: X509Certificate): string[] {
  const names: string[] = [];
  const san = cert.subjectAltName;
  if (san) {
    // Node quotes values that contain separators, JSON-style; plain names are bare.
    const re = /(?:^|, )(DNS|IP Address):("(?:[^"\\]|\\.)*"|[^,]*)/g;
    for (const m of san.matchAll(re)) {
      const raw = m[2]!;
      names.push(normalizeName(raw.startsWith('"') ? (JSON.parse(raw) as string) : raw));
    }
  }
  if (names.length === 0) {
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject);
    if (cn) names.push(normalizeName(cn[1]!));
  }
  return [...new Set(names)];
}

/** Signed by its own key. (checkIssued() would also demand keyCertSign, which a self-signed leaf lacks.) */
function isSelfSigned(cert: X509Certificate): boolean {
  return cert.subject === cert.issuer && cert.verify(cert.publicKey);
}

/** Leaf first, then each issuer in turn; certificates outside the chain keep their file order at the end. */
function orderChain(leaf: X509Certificate, others: X509Certificate[]): X509Certificate[] {
  const chain = [leaf];
  const rest = [...others];
  let current = leaf;
  for (;;) {
    const i = rest.findIndex((c) => current.checkIssued(c));
    if (i < 0 || isSelfSigned(current)) break;
    current = rest.splice(i, 1)[0]!;
    chain.push(current);
  }
  return [...chain, ...rest];
}

function createContext(keyPem: string, chainPem: string): tls.SecureContext {
  return tls.createSecureContext({ key: keyPem, cert: chainPem, minVersion: MIN_TLS_VERSION });
}

/** Parses one PEM file (chain and key in any order). Throws a plain Error with the reason. */
function parseCertFile(file: string, text: string): LoadedCert {
  const blocks = splitPem(text);
  const certBlocks = blocks.filter((b) => b.label === 'CERTIFICATE' || b.label === 'TRUSTED CERTIFICATE');
  const keyBlocks = blocks.filter((b) => /PRIVATE KEY$/.test(b.label));
  if (certBlocks.length === 0) throw new Error('no certificate in the file');
  if (keyBlocks.length === 0) throw new Error('no private key in the file');
  if (keyBlocks.some((b) => b.label === 'ENCRYPTED PRIVATE KEY' || /Proc-Type:\s*4,ENCRYPTED/.test(b.pem))) {
    throw new Error('the private key is encrypted; a key without passphrase is needed');
  }
  if (keyBlocks.length > 1) throw new Error('more than one private key in the file');
  const certs = certBlocks.map((b, i) => {
    try {
      return new X509Certificate(b.pem);
    } catch (err) {
      throw new Error(`certificate #${i + 1} cannot be parsed (${(err as Error).message})`);
    }
  });
  let key: KeyObject;
  try {
    key = createPrivateKey(keyBlocks[0]!.pem);
  } catch (err) {
    throw new Error(`the private key cannot be parsed (${(err as Error).message})`);
  }
  const leafIndex = certs.findIndex((c) => c.checkPrivateKey(key));
  if (leafIndex < 0) throw new Error('the private key does not match the certificate');
  const leaf = certs[leafIndex]!;
  const chain = orderChain(leaf, certs.filter((_, i) => i !== leafIndex));
  const keyPem = key.export({ type: 'pkcs8', format: 'pem' }).toString();
  const chainPem = chain.map((c) => c.toString()).join('');
  let context: tls.SecureContext;
  try {
    context = createContext(keyPem, chainPem);
  } catch (err) {
    throw new Error(`TLS rejects the certificate (${(err as Error).message})`);
  }
  const names = certificateNames(leaf);
  if (names.length === 0) throw new Error('the certificate names no host (no subjectAltName and no CN)');
  return { file, names, leaf, key, keyPem, chainPem, context, selfSigned: isSelfSigned(leaf) };
}

async function loadCertFile(file: string): Promise<LoadedCert> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new BootError('CERT_INVALID', `certificate file ${file}: cannot read it (${e.code ?? e.message})`, { cause: err });
  }
  try {
    return parseCertFile(file, text);
  } catch (err) {
    throw new BootError('CERT_INVALID', `certificate file ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Names the generated certificate carries for a host: the host, and one wildcard level for its
 *  service subdomains (conference., upload.). IP addresses have no subdomains. */
function namesForHost(host: string): string[] {
  return isIP(host) ? [host] : [host, `*.${host}`];
}

function covers(cert: LoadedCert, host: string): boolean {
  return cert.names.some((n) => nameMatches(n, host));
}

/** forge exports getTBSCertificate (cert.sign() uses it) but its type definitions omit it. */
const forgeTbs = forge.pki as unknown as { getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1 };

/** Serial numbers must be positive and minimally encoded: clear the sign bit, keep the first byte non-zero. */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

/**
 * A self-signed certificate built with forge (Node cannot create certificates). The key comes
 * from Node's generateKeyPair and the signature from Node's crypto.sign, both off the main thread;
 * forge's own RSA is pure JavaScript and would block the event loop for a noticeable time.
 */
export async function generateSelfSigned(hosts: string[], now: Date): Promise<{ certPem: string; keyPem: string }> {
  const { publicKey, privateKey } = await generateKeyPairAsync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey);
  cert.serialNumber = randomSerial();
  // Backdated by an hour so clients whose clock is a little behind accept it at once.
  cert.validity.notBefore = new Date(now.getTime() - 60 * 60 * 1000);
  cert.validity.notAfter = new Date(now.getTime() + SELF_SIGNED_VALIDITY_MS);
  const subject = [
    { name: 'commonName', value: hosts[0]! },
    { name: 'organizationName', value: 'Parley self-signed' },
  ];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  const altNames = hosts.flatMap(namesForHost).map((n) => (isIP(n) ? { type: 7, ip: n } : { type: 2, value: n }));
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    { name: 'subjectAltName', altNames },
    { name: 'subjectKeyIdentifier' },
  ]);
  // What forge's cert.sign() does, with the RSA operation done by Node.
  const oid = forge.pki.oids.sha256WithRSAEncryption!;
  cert.signatureOid = oid;
  cert.siginfo.algorithmOid = oid;
  cert.tbsCertificate = forgeTbs.getTBSCertificate(cert);
  const tbs = Buffer.from(forge.asn1.toDer(cert.tbsCertificate).getBytes(), 'binary');
  const signature = await promisify(cryptoSign)('sha256', tbs, privateKey);
  cert.signature = signature.toString('binary');
  return { certPem: forge.pki.certificateToPem(cert), keyPem: privateKey };
}

/** The stored self-signed certificate if it still serves these hosts for more than a week. */
async function reuseSelfSigned(file: string, hosts: string[], now: Date, log: Logger): Promise<LoadedCert | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn('cannot read the generated certificate, creating a new one', { file, err: err as Error });
    return undefined;
  }
  let cert: LoadedCert;
  try {
    cert = parseCertFile(file, text);
  } catch (err) {
    log.warn('the generated certificate is unusable, creating a new one', { file, reason: (err as Error).message });
    return undefined;
  }
  const notBefore = new Date(cert.leaf.validFrom);
  const notAfter = new Date(cert.leaf.validTo);
  if (notBefore.getTime() > now.getTime() || notAfter.getTime() - now.getTime() <= RENEW_BEFORE_MS) {
    log.info('the generated certificate expires soon, creating a new one', { file, notAfter: notAfter.toISOString() });
    return undefined;
  }
  const wanted = hosts.flatMap(namesForHost);
  if (!wanted.every((n) => cert.names.includes(normalizeName(n)))) {
    log.info('the hosts changed since the certificate was generated, creating a new one', { file });
    return undefined;
  }
  return cert;
}

async function selfSignedFor(hosts: string[], dataDir: string, now: Date, log: Logger): Promise<LoadedCert> {
  const file = path.join(dataDir, SELF_SIGNED_FILE);
  const reused = await reuseSelfSigned(file, hosts, now, log);
  if (reused) return reused;
  const dir = path.dirname(file);
  const { certPem, keyPem } = await generateSelfSigned(hosts, now);
  const text = certPem + keyPem;
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // mkdir leaves an existing directory's mode alone; the key must not be readable by others.
    await chmod(dir, 0o700);
    // Written beside the target then renamed, so a crash never leaves half a key to be "reused".
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, text, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, file).catch(async (err: unknown) => {
      await unlink(tmp).catch(() => {});
      throw err;
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new BootError('CERT_INVALID', `cannot store the generated certificate in ${dir} (${e.code ?? e.message})`, { cause: err });
  }
  log.info('generated a self-signed certificate', { file, hosts });
  return parseCertFile(file, text);
}

class Store implements CertStore {
  private readonly exact = new Map<string, LoadedCert>();
  private readonly wildcard = new Map<string, LoadedCert>();
  private readonly options: tls.TlsOptions;

  constructor(private readonly certs: LoadedCert[], private readonly fallback: LoadedCert) {
    // The first file that names a host wins, in configuration order; the generated one comes last.
    for (const cert of certs) {
      for (const name of cert.names) {
        if (name.startsWith('*.')) {
          if (!this.wildcard.has(name.slice(2))) this.wildcard.set(name.slice(2), cert);
        } else if (!this.exact.has(name)) {
          this.exact.set(name, cert);
        }
      }
    }
    const sni = (servername: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void): void => {
      cb(null, this.secureContext(servername));
    };
    this.options = {
      // TLSSocket uses secureContext as is; tls.createServer builds its default from key/cert.
      secureContext: fallback.context,
      key: fallback.keyPem,
      cert: fallback.chainPem,
      minVersion: MIN_TLS_VERSION,
      SNICallback: sni,
    };
  }

  private find(servername: string | undefined): LoadedCert {
    if (!servername) return this.fallback;
    const name = normalizeName(servername);
    const exact = this.exact.get(name);
    if (exact) return exact;
    const dot = name.indexOf('.');
    if (dot > 0) {
      const wild = this.wildcard.get(name.slice(dot + 1));
      if (wild) return wild;
    }
    return this.fallback;
  }

  secureContext(servername?: string): tls.SecureContext {
    return this.find(servername).context;
  }

  serverOptions(): tls.TlsOptions {
    // A copy: callers spread their own options into it.
    return { ...this.options };
  }

  describe(): Array<{ file: string; names: string[]; notAfter: Date; selfSigned: boolean }> {
    return this.certs.map((c) => ({
      file: c.file,
      names: [...c.names],
      notAfter: new Date(c.leaf.validTo),
      selfSigned: c.selfSigned,
    }));
  }
}

export async function loadCertificates(options: LoadCertificatesOptions): Promise<CertStore> {
  const { log } = options;
  const now = options.now ?? new Date();
  const hosts = [...new Set(options.hosts.map(normalizeName))];
  const loaded: LoadedCert[] = [];
  for (const file of options.certfiles) {
    const cert = await loadCertFile(file);
    const notAfter = new Date(cert.leaf.validTo);
    const notBefore = new Date(cert.leaf.validFrom);
    // Expiry is logged, not fatal: stopping the server would not renew the certificate, and
    // clients that pin or ignore validity keep working.
    if (notAfter.getTime() <= now.getTime()) {
      log.error('certificate has expired', { file, names: cert.names, notAfter: notAfter.toISOString() });
    } else if (notBefore.getTime() > now.getTime()) {
      log.warn('certificate is not valid yet', { file, names: cert.names, notBefore: notBefore.toISOString() });
    } else if (notAfter.getTime() - now.getTime() < 14 * DAY_MS) {
      log.warn('certificate expires soon', { file, names: cert.names, notAfter: notAfter.toISOString() });
    }
    log.info('loaded certificate', { file, names: cert.names, notAfter: notAfter.toISOString() });
    loaded.push(cert);
  }

  const uncovered = hosts.filter((h) => !loaded.some((c) => covers(c, h)));
  if (uncovered.length > 0 || loaded.length === 0) {
    // Without hosts there is nothing to name; 'localhost' keeps TLS possible for tools and tests.
    const names = uncovered.length > 0 ? uncovered : ['localhost'];
    const generated = await selfSignedFor(names, options.dataDir, now, log);
    log.warn('using a self-signed certificate; clients will ask users to confirm its fingerprint', {
      hosts: names,
      file: generated.file,
      sha256: generated.leaf.fingerprint256,
    });
    loaded.push(generated);
  }

  // Connections without SNI get the certificate of the first configured host.
  const first = hosts[0];
  const fallback = (first !== undefined && loaded.find((c) => covers(c, first))) || loaded[0]!;
  return new Store(loaded, fallback);
}
