// The federation tests' certificate helper: leaves validate against the test CA (and a TLS client
// trusting only that CA accepts them), self-signed ones do not, and the names are those RFC 6120
// §13.7.1.4 asks for: a dNSName and an XmppAddr otherName for each domain.
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import forge from 'node-forge';
import t from 'tap';
import { silentLogger } from '../../lib/log.js';
import { loadCertificates } from '../../lib/net/certs.js';
import { issueLeaf, testCa, writeTestCerts, XMPP_ADDR_OID } from '../helpers/test-ca.js';

const dir = mkdtempSync(path.join(tmpdir(), 'parley-test-ca-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** The XmppAddr values in a certificate's subjectAltName, decoded from its ASN.1. */
function xmppAddrs(certPem: string): string[] {
  const cert = forge.pki.certificateFromPem(certPem);
  const ext = cert.getExtension('subjectAltName') as { value: string } | undefined;
  if (!ext) return [];
  const seq = forge.asn1.fromDer(ext.value);
  const found: string[] = [];
  for (const name of seq.value as forge.asn1.Asn1[]) {
    if (name.tagClass !== forge.asn1.Class.CONTEXT_SPECIFIC || name.type !== 0) continue;
    const [oid, wrapped] = name.value as forge.asn1.Asn1[];
    if (forge.asn1.derToOid(oid!.value as string) !== XMPP_ADDR_OID) continue;
    const utf8 = (wrapped!.value as forge.asn1.Asn1[])[0]!;
    if (utf8.type !== forge.asn1.Type.UTF8) throw new Error(`XmppAddr is ASN.1 type ${utf8.type}, not a UTF8String`);
    found.push(forge.util.decodeUtf8(utf8.value as string));
  }
  return found;
}

/** Does a TLS client that trusts only `ca` accept a server presenting this chain for `servername`? */
async function handshake(chainPem: string, keyPem: string, servername: string, ca: string): Promise<{ authorized: boolean; error?: string }> {
  const server = tls.createServer({ cert: chainPem, key: keyPem }, (s) => s.end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  try {
    return await new Promise((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port, servername, ca, rejectUnauthorized: false }, () => {
        resolve({ authorized: socket.authorized, error: socket.authorizationError?.toString() });
        socket.destroy();
      });
      socket.on('error', reject);
    });
  } finally {
    server.close();
  }
}

t.test('a leaf from the CA validates against it, with the names asked for', async (t) => {
  const ca = new X509Certificate(testCa().certPem);
  t.ok(ca.ca, 'the CA certificate is a CA');
  const leafPem = issueLeaf(['parley.test', 'conference.parley.test']);
  const leaf = new X509Certificate(leafPem.certPem);
  t.ok(leaf.verify(ca.publicKey), 'signed by the CA key');
  t.ok(leaf.checkIssued(ca), 'issued by the CA');
  t.notOk(leaf.ca, 'the leaf is no CA');
  t.equal(leaf.checkHost('parley.test'), 'parley.test');
  t.equal(leaf.checkHost('conference.parley.test'), 'conference.parley.test');
  t.equal(leaf.checkHost('prosody.test'), undefined, 'no other name');
  t.same(xmppAddrs(leafPem.certPem), ['parley.test', 'conference.parley.test']);
  t.equal(leafPem.chainPem, leafPem.certPem + testCa().certPem, 'the chain is leaf then CA');
  t.equal(issueLeaf(['parley.test', 'conference.parley.test']), leafPem, 'cached within the process');
});

t.test('TLS clients trusting the CA accept a CA leaf and refuse a self-signed one', async (t) => {
  const ca = testCa().certPem;
  const good = issueLeaf(['parley.test']);
  const res = await handshake(good.chainPem, good.keyPem, 'parley.test', ca);
  t.same(res, { authorized: true, error: undefined });

  const self = issueLeaf(['parley.test'], { selfSigned: true });
  t.equal(self.chainPem, self.certPem, 'a self-signed chain is the leaf alone');
  const selfCert = new X509Certificate(self.certPem);
  t.ok(selfCert.verify(selfCert.publicKey), 'signed by its own key');
  t.notOk(selfCert.verify(new X509Certificate(ca).publicKey), 'not by the CA');
  const refused = await handshake(self.chainPem, self.keyPem, 'parley.test', ca);
  t.equal(refused.authorized, false);
  t.match(refused.error, /SELF_SIGNED|self.signed/i);
});

t.test('wildcards get a dNSName but no XmppAddr', async (t) => {
  const leaf = issueLeaf(['wild.test', '*.wild.test']);
  t.same(xmppAddrs(leaf.certPem), ['wild.test']);
  t.equal(new X509Certificate(leaf.certPem).checkHost('muc.wild.test'), '*.wild.test', 'the wildcard covers a subdomain');
});

t.test('written files load in Parley and hold what Prosody needs', async (t) => {
  const files = writeTestCerts(path.join(dir, 'certs'), ['parley.test']);
  t.equal(readFileSync(files.caFile, 'utf8'), testCa().certPem);
  t.equal(readFileSync(files.certFile, 'utf8'), files.leaf.chainPem);
  t.equal(readFileSync(files.keyFile, 'utf8'), files.leaf.keyPem);
  const store = await loadCertificates({ certfiles: [files.combinedFile], hosts: ['parley.test'], dataDir: dir, log: silentLogger });
  const [loaded] = store.describe();
  t.equal(loaded?.file, files.combinedFile);
  t.same(loaded?.names, ['parley.test']);
  t.equal(loaded?.selfSigned, false);
  t.throws(() => issueLeaf([]), /at least one domain/);
});
