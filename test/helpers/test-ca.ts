// A throwaway certificate authority for federation tests: a CA, leaf certificates it signs for
// given XMPP domains, and self-signed leaves it does not know, written as PEM files in the shapes
// Parley (`certfiles:`, chain and key in one file) and Prosody (separate certificate and key) load.
//
// Keys come from Node's generateKeyPairSync and signatures from crypto.sign: forge's RSA is pure
// JavaScript and takes seconds per 2048-bit key. forge only assembles the certificate structure,
// which Node cannot do. Everything is cached per process, so a test file that starts several
// servers pays for each key once.
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import forge from 'node-forge';

/** id-on-xmppAddr (RFC 6120 §13.7.1.4): the otherName that names an XMPP domain in a certificate. */
export const XMPP_ADDR_OID = '1.3.6.1.5.5.7.8.5';

const DAY_MS = 24 * 60 * 60 * 1000;
const { asn1 } = forge;

export interface TestCa {
  certPem: string;
  keyPem: string;
}

export interface TestLeaf {
  /** The leaf certificate alone. */
  certPem: string;
  keyPem: string;
  /** Leaf then issuer (just the leaf when self-signed): what a server presents. */
  chainPem: string;
  domains: string[];
  selfSigned: boolean;
}

export interface LeafOptions {
  /** Signed by its own key instead of the test CA: a certificate no test trusts. */
  selfSigned?: boolean;
}

export interface TestCertFiles {
  /** The CA certificate, to trust (Parley `s2s.ca_files`, Prosody `cafile`, Node `ca`). */
  caFile: string;
  /** Chain and key in one file, as Parley's `certfiles:` takes it. */
  combinedFile: string;
  /** The chain alone and the key alone, as Prosody's `certificate`/`key` take them. */
  certFile: string;
  keyFile: string;
  leaf: TestLeaf;
}

interface KeyPair {
  publicPem: string;
  privatePem: string;
}

/** forge exports getTBSCertificate (cert.sign() uses it) but its type definitions omit it. */
const forgeTbs = forge.pki as unknown as { getTBSCertificate(cert: forge.pki.Certificate): forge.asn1.Asn1 };

function newKeyPair(): KeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { publicPem: publicKey, privatePem: privateKey };
}

/** Positive, minimally encoded, and unique enough that no two test certificates share one. */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40;
  return bytes.toString('hex');
}

/** What forge's cert.sign() does, with the RSA operation done by Node. */
function signWith(cert: forge.pki.Certificate, issuerKeyPem: string): void {
  const oid = forge.pki.oids.sha256WithRSAEncryption!;
  cert.signatureOid = oid;
  cert.siginfo.algorithmOid = oid;
  cert.tbsCertificate = forgeTbs.getTBSCertificate(cert);
  const tbs = Buffer.from(asn1.toDer(cert.tbsCertificate).getBytes(), 'binary');
  cert.signature = sign('sha256', tbs, issuerKeyPem).toString('binary');
}

function baseCertificate(publicPem: string, commonName: string): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicPem);
  cert.serialNumber = randomSerial();
  const now = Date.now();
  // Backdated, so a peer whose clock runs a little behind still accepts it.
  cert.validity.notBefore = new Date(now - DAY_MS);
  cert.validity.notAfter = new Date(now + 30 * DAY_MS);
  cert.setSubject([
    { name: 'commonName', value: commonName },
    { name: 'organizationName', value: 'Parley tests' },
  ]);
  return cert;
}

/**
 * subjectAltName with a dNSName and an XmppAddr for each domain (RFC 6120 §13.7.1.4). forge has no
 * encoder for otherName, so the extension is built as ASN.1 here:
 *   otherName [0] { type-id OID, value [0] EXPLICIT UTF8String }
 * A wildcard gets only the dNSName: an XmppAddr names one exact domain.
 */
function subjectAltName(domains: string[]): { id: string; critical: boolean; value: forge.asn1.Asn1 } {
  const names: forge.asn1.Asn1[] = [];
  for (const domain of domains) {
    names.push(asn1.create(asn1.Class.CONTEXT_SPECIFIC, 2, false, domain));
    if (domain.startsWith('*.')) continue;
    const utf8 = forge.util.encodeUtf8(domain);
    names.push(
      asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [
        asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(XMPP_ADDR_OID).getBytes()),
        asn1.create(asn1.Class.CONTEXT_SPECIFIC, 0, true, [asn1.create(asn1.Class.UNIVERSAL, asn1.Type.UTF8, false, utf8)]),
      ]),
    );
  }
  return { id: '2.5.29.17', critical: false, value: asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, names) };
}

let cachedCa: (TestCa & { keys: KeyPair; cert: forge.pki.Certificate }) | undefined;

function caInternal(): TestCa & { keys: KeyPair; cert: forge.pki.Certificate } {
  if (cachedCa) return cachedCa;
  const keys = newKeyPair();
  const cert = baseCertificate(keys.publicPem, 'Parley Test CA');
  cert.setIssuer(cert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  signWith(cert, keys.privatePem);
  cachedCa = { certPem: forge.pki.certificateToPem(cert), keyPem: keys.privatePem, keys, cert };
  return cachedCa;
}

/** The process's test CA (created on first use). */
export function testCa(): TestCa {
  const { certPem, keyPem } = caInternal();
  return { certPem, keyPem };
}

const leafCache = new Map<string, TestLeaf>();

/** A leaf certificate for these domains (the first is its CN), signed by the test CA unless selfSigned. */
export function issueLeaf(domains: string[], options: LeafOptions = {}): TestLeaf {
  if (domains.length === 0) throw new Error('issueLeaf needs at least one domain');
  const selfSigned = options.selfSigned ?? false;
  const cacheKey = `${selfSigned ? 'self' : 'ca'}:${domains.join(',')}`;
  const cached = leafCache.get(cacheKey);
  if (cached) return cached;
  const keys = newKeyPair();
  const cert = baseCertificate(keys.publicPem, domains[0]!);
  const ca = selfSigned ? undefined : caInternal();
  cert.setIssuer(ca ? ca.cert.subject.attributes : cert.subject.attributes);
  const authority = ca ? [{ name: 'authorityKeyIdentifier', keyIdentifier: ca.cert.generateSubjectKeyIdentifier().getBytes() }] : [];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    // Servers use their certificate both ways on s2s: accepting streams and opening them.
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    subjectAltName(domains),
    { name: 'subjectKeyIdentifier' },
    ...authority,
  ]);
  signWith(cert, ca ? ca.keys.privatePem : keys.privatePem);
  const certPem = forge.pki.certificateToPem(cert);
  const leaf: TestLeaf = {
    certPem,
    keyPem: keys.privatePem,
    chainPem: ca ? certPem + ca.certPem : certPem,
    domains: [...domains],
    selfSigned,
  };
  leafCache.set(cacheKey, leaf);
  return leaf;
}

/**
 * Writes the CA and a leaf for these domains into dir, named after `name` (default: the first
 * domain): `<name>.pem` (chain + key), `<name>.crt`, `<name>.key`, and `ca.crt`.
 */
export function writeTestCerts(dir: string, domains: string[], options: LeafOptions & { name?: string } = {}): TestCertFiles {
  const leaf = issueLeaf(domains, options);
  const name = options.name ?? domains[0]!.replace(/^\*\./, 'wildcard.');
  mkdirSync(dir, { recursive: true });
  const file = (suffix: string) => path.join(dir, `${name}${suffix}`);
  const files: TestCertFiles = {
    caFile: path.join(dir, 'ca.crt'),
    combinedFile: file('.pem'),
    certFile: file('.crt'),
    keyFile: file('.key'),
    leaf,
  };
  writeFileSync(files.caFile, testCa().certPem);
  writeFileSync(files.combinedFile, leaf.chainPem + leaf.keyPem, { mode: 0o600 });
  writeFileSync(files.certFile, leaf.chainPem);
  writeFileSync(files.keyFile, leaf.keyPem, { mode: 0o600 });
  return files;
}
