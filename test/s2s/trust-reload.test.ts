// s2s.ca_files is applied by a reload: a peer whose certificate chains to a newly trusted CA is
// offered SASL EXTERNAL on its next stream; a CA file that cannot be read refuses the reload and
// keeps the running trust anchors.
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Element } from 'ltx';
import t from 'tap';
import { S2S_LISTEN } from '../helpers/s2s-pair.js';
import { RawPeer } from '../helpers/s2s-raw-peer.js';
import { startTestServer } from '../helpers/server.js';
import { writeTestCerts } from '../helpers/test-ca.js';

const certDir = mkdtempSync(path.join(tmpdir(), 'parley-s2s-trust-'));
t.teardown(() => rmSync(certDir, { recursive: true, force: true }));
const carol = writeTestCerts(certDir, ['c.test']);

const srv = await startTestServer({ hosts: ['b.test'], listen: S2S_LISTEN, yaml: 's2s:\n  system_cas: false' });
t.teardown(() => srv.close());
const port = srv.ports('s2s')[0]!;

/** The SASL mechanisms B offers a c.test peer presenting the CA-signed certificate. */
async function offered(): Promise<string[]> {
  const peer = await RawPeer.dial(port, 'c.test', 'b.test');
  try {
    await peer.open();
    const features = await peer.secure({ cert: carol.leaf.chainPem, key: carol.leaf.keyPem });
    return features.getChild('mechanisms')?.getChildren('mechanism').map((m: Element) => m.text()) ?? [];
  } finally {
    peer.destroy();
  }
}

const original = readFileSync(srv.configFile, 'utf8');

t.test('before: the CA is not trusted, so no EXTERNAL', async (t) => {
  t.same(await offered(), []);
});

t.test('a CA file that cannot be read refuses the reload', async (t) => {
  writeFileSync(srv.configFile, original);
  appendFileSync(srv.configFile, `\n  ca_files: [${JSON.stringify(path.join(certDir, 'missing.crt'))}]\n`);
  await t.rejects(srv.server.reload(), /s2s\.ca_files: .*missing\.crt: ENOENT/);
  t.same(await offered(), [], 'the running trust anchors stay');
});

t.test('after a reload that trusts the CA, EXTERNAL is offered', async (t) => {
  writeFileSync(srv.configFile, original);
  appendFileSync(srv.configFile, `\n  ca_files: [${JSON.stringify(carol.caFile)}]\n`);
  await srv.server.reload();
  t.same(await offered(), ['EXTERNAL']);
});
