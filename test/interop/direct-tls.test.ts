// Direct TLS (XEP-0368) with two hosts and two certificates: SNI picks each host's certificate
// (checked from slixmpp and from Node), ALPN answers xmpp-client, SCRAM-SHA-512 and the -PLUS
// mechanisms work (tls-server-end-point hashing each certificate as RFC 5929 says: SHA-256 for
// the RSA/SHA-256 one, SHA-384 for the ECDSA/SHA-384 one), and guessing is throttled.
import { execFile, execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parseConfig } from '../../lib/config/load.js';
import { silentLogger } from '../../lib/log.js';
import { generateSelfSigned } from '../../lib/net/certs.js';
import { Server } from '../../lib/server.js';
import { tlsLogin, type TlsLoginOptions } from '../helpers/scram-client.js';

// Debian's python3-slixmpp lives beside Debian's python, not necessarily the first python3 on PATH.
const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const script = fileURLToPath(new URL('../fixtures/slix_login.py', import.meta.url));

const dir = mkdtempSync(path.join(tmpdir(), 'parley-direct-tls-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

// alpha: RSA signed with SHA-256 (Parley's own generator). beta: ECDSA P-256 signed with SHA-384
// (openssl), so tls-server-end-point must hash with SHA-384 there. Without the openssl command,
// beta gets a second generated certificate and the SHA-384 case is not covered.
const alpha = await generateSelfSigned(['alpha.example'], new Date());
writeFileSync(path.join(dir, 'alpha.pem'), alpha.certPem + alpha.keyPem);
let betaCert: string;
let betaHash: 'sha256' | 'sha384' = 'sha384';
try {
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-sha384', '-nodes', '-days', '2',
    '-subj', '/CN=beta.example', '-addext', 'subjectAltName=DNS:beta.example',
    '-keyout', path.join(dir, 'beta.key'), '-out', path.join(dir, 'beta.crt'),
  ], { stdio: 'ignore' });
  betaCert = readFileSync(path.join(dir, 'beta.crt'), 'utf8');
  writeFileSync(path.join(dir, 'beta.pem'), betaCert + readFileSync(path.join(dir, 'beta.key'), 'utf8'));
} catch {
  const beta = await generateSelfSigned(['beta.example'], new Date());
  betaCert = beta.certPem;
  betaHash = 'sha256';
  writeFileSync(path.join(dir, 'beta.pem'), beta.certPem + beta.keyPem);
}

const der = (pem: string) => new X509Certificate(pem).raw;
const certs = {
  'alpha.example': { der: der(alpha.certPem), endPointHash: 'sha256' },
  'beta.example': { der: der(betaCert), endPointHash: betaHash },
} as const;
type Host = keyof typeof certs;
const hosts = Object.keys(certs) as Host[];
const fingerprint = (host: Host) => createHash('sha256').update(certs[host].der).digest('hex');

const configText = [
  'hosts: [alpha.example, beta.example]',
  `data_dir: ${JSON.stringify(path.join(dir, 'data'))}`,
  `certfiles: [${JSON.stringify(path.join(dir, 'alpha.pem'))}, ${JSON.stringify(path.join(dir, 'beta.pem'))}]`,
  'listen:',
  '  - port: 0',
  '    ip: 127.0.0.1',
  '    module: c2s',
  '    tls: true',
  'auth:',
  '  scram_iterations: 4096',
  '  throttle:',
  '    account_failures: 3',
  '    failure_delay: 0',
  'modules:',
  '  disco: {}',
].join('\n');
const server = await Server.start({ config: parseConfig(configText, path.join(dir, 'parley.yml')), log: silentLogger });
t.teardown(() => server.stop());
const port = server.listeners.find((l) => l.module === 'c2s')!.port;
for (const host of hosts) await server.accounts.register('alice', host, `secret of ${host}`);
// Never logged in: no address is trusted for it, so its account limit applies to this machine.
await server.accounts.register('bob', 'beta.example', 'bobs secret');

const login = (host: Host, o: Partial<TlsLoginOptions> = {}) =>
  tlsLogin({ port, host, directTls: true, user: 'alice', password: `secret of ${host}`, mechanism: 'SCRAM-SHA-512', ...o });

function slixmpp(host: Host, mechanism: string, binding: 'stock' | 'none', password = `secret of ${host}`, user = 'alice'): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(python, [script, String(port), `${user}@${host}/slix`, password, mechanism, binding], { timeout: 30_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
  });
}

for (const host of hosts) {
  t.test(`${host}: SNI selects its certificate; ALPN; no STARTTLS offered`, async (t) => {
    const r = await login(host);
    t.ok(r.peerCert.equals(certs[host].der), 'Node sees the certificate of the host it named');
    t.equal(r.alpn, 'xmpp-client');
    t.equal(r.protocol, 'TLSv1.3');
    t.same([r.ok, r.verified], [true, true], 'SCRAM-SHA-512 over Direct TLS');
    t.same(r.cbTypes, ['tls-exporter', 'tls-server-end-point']);
  });

  t.test(`${host}: -PLUS with both binding types`, async (t) => {
    for (const mechanism of ['SCRAM-SHA-512-PLUS', 'SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS']) {
      const exporter = await login(host, { mechanism, cbType: 'tls-exporter' });
      t.same([exporter.ok, exporter.verified], [true, true], `${mechanism} with tls-exporter`);
      const endPoint = await login(host, { mechanism, cbType: 'tls-server-end-point', cbHash: certs[host].endPointHash });
      t.same([endPoint.ok, endPoint.verified], [true, true], `${mechanism} with tls-server-end-point (${certs[host].endPointHash})`);
    }
    const otherHash = certs[host].endPointHash === 'sha256' ? 'sha384' : 'sha256';
    const wrong = await login(host, { mechanism: 'SCRAM-SHA-512-PLUS', cbType: 'tls-server-end-point', cbHash: otherHash });
    t.same([wrong.ok, wrong.condition], [false, 'not-authorized'], `${otherHash} is not this certificate's end-point hash`);
  });

  t.test(`${host}: slixmpp over Direct TLS`, async (t) => {
    const r = await slixmpp(host, 'SCRAM-SHA-512', 'none');
    t.equal(r.code, 0, r.out);
    t.match(r.out, `TLS TLSv1.3 ${fingerprint(host)}`, 'slixmpp got the certificate of the host it named');
    t.notMatch(r.out, fingerprint(hosts.find((h) => h !== host)!), 'not the other one');
    t.match(r.out, `LOGGED IN alice@${host}/slix`);
  });
}

t.test('slixmpp as shipped: its `y` flag is refused as a channel binding downgrade', async (t) => {
  // slixmpp 1.8 knows only tls-unique, so it cannot use our -PLUS; with a plain SCRAM mechanism it
  // says it could have bound (`y`), which is exactly what a stripped offer looks like.
  const r = await slixmpp('alpha.example', 'SCRAM-SHA-256', 'stock');
  t.not(r.code, 0, r.out);
  t.match(r.out, /AUTH FAILED not-authorized .*downgrade/);
  const plain = await slixmpp('alpha.example', 'PLAIN', 'stock');
  t.equal(plain.code, 0, `PLAIN carries no binding flag: ${plain.out}`);
});

t.test('wrong passwords beyond the limit are throttled', async (t) => {
  const slix = await slixmpp('beta.example', 'SCRAM-SHA-512', 'none', 'guess 1', 'bob');
  t.match(slix.out, 'AUTH FAILED not-authorized');
  for (let i = 2; i <= 3; i++) t.equal((await login('beta.example', { user: 'bob', password: `guess ${i}` })).condition, 'not-authorized');
  const refused = await login('beta.example', { user: 'bob', password: 'bobs secret' });
  t.same([refused.ok, refused.condition], [false, 'temporary-auth-failure'], 'even the right password is refused now');
  t.match(refused.text, /too many failed logins for this account/);
  const slixRefused = await slixmpp('beta.example', 'SCRAM-SHA-512', 'none', 'bobs secret', 'bob');
  t.match(slixRefused.out, 'AUTH FAILED temporary-auth-failure', 'slixmpp is told too');
  t.not(slixRefused.code, 0);
  t.equal((await login('beta.example')).ok, true, 'other accounts log in');
});
