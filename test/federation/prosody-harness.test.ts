// Proves the Prosody harness the federation tests stand on: Prosody starts on its own loopback
// address, its users log in over STARTTLS with the test CA's certificate and chat, and its
// resolver finds `parley.test` through the test's own hosts file (a plain TCP listener on that
// address sees Prosody's s2s stream arrive), while unknown names fail locally; and a test process
// that dies outright takes its Prosody with it.
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { rmSync } from 'node:fs';
import net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { xml } from '@xmpp/client';
import t from 'tap';
import { canConnect, nextStanza as next, prosodyClient, prosodyMissing, startProsody } from '../helpers/prosody.js';
import { testCa } from '../helpers/test-ca.js';

// xmpp.js takes no TLS options (it cannot be given our CA), so Node's check is off for it; the
// first test checks the certificate Prosody presented against the test CA itself instead.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

/** Addresses of their own, so this file can run beside the federation tests (127.0.0.2/.3). */
const PROSODY_IP = '127.0.0.5';
const FAKE_PARLEY_IP = '127.0.0.4';
const ORPHAN_IP = '127.0.0.6';

async function run(): Promise<void> {
  const fakeParley = net.createServer();
  const firstConnection = new Promise<{ remote: string; header: string }>((resolve) => {
    fakeParley.once('connection', (socket) => {
      let data = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => {
        data += chunk;
        // Prosody opens with the XML declaration and the stream header; once it is complete we
        // have our proof, and closing makes Prosody bounce the queued message.
        if (/<stream:stream[^>]*>/.test(data)) {
          resolve({ remote: socket.remoteAddress ?? '', header: data });
          socket.destroy();
        }
      });
      socket.on('error', () => undefined);
    });
  });
  await new Promise<void>((resolve, reject) => {
    fakeParley.once('error', reject);
    fakeParley.listen(5269, FAKE_PARLEY_IP, resolve);
  });
  t.teardown(() => new Promise<void>((resolve) => fakeParley.close(() => resolve())));

  const prosody = await startProsody({
    t,
    domain: 'prosody.test',
    ip: PROSODY_IP,
    hosts: { 'parley.test': FAKE_PARLEY_IP },
    users: [
      { user: 'alice', password: 'secret' },
      { user: 'bob', password: 'secret' },
    ],
  });

  const alice = prosodyClient(prosody, 'alice', 'secret', 'harness');
  const bob = prosodyClient(prosody, 'bob', 'secret', 'harness');
  t.teardown(async () => {
    await alice.stop().catch(() => undefined);
    await bob.stop().catch(() => undefined);
  });

  t.test('Prosody users log in over STARTTLS with the test CA certificate and chat', async (t) => {
    await alice.start();
    await bob.start();
    const tlsSocket = (alice as unknown as { socket: { socket?: TLSSocket } }).socket.socket;
    t.ok(tlsSocket?.encrypted, 'the c2s stream is TLS');
    const presented = new X509Certificate(tlsSocket!.getPeerCertificate().raw);
    t.ok(presented.verify(new X509Certificate(testCa().certPem).publicKey), 'Prosody presented a certificate from the test CA');
    t.equal(presented.checkHost('prosody.test'), 'prosody.test', 'for its domain');

    await alice.send(xml('presence'));
    await bob.send(xml('presence'));
    const received = next(bob, (st) => st.is('message') && !!st.getChildText('body'));
    await alice.send(xml('message', { to: 'bob@prosody.test', type: 'chat' }, xml('body', {}, 'hello through Prosody')));
    const msg = await received;
    t.equal(msg.attrs.from, 'alice@prosody.test/harness');
    t.equal(msg.getChildText('body'), 'hello through Prosody');
    t.match(prosody.logText(), /Authenticated as alice@prosody\.test/, "Prosody's log shows the login");
  });

  t.test('Prosody resolves parley.test through the test hosts file', async (t) => {
    const bounce = next(alice, (st) => st.is('message') && st.attrs.type === 'error' && st.attrs.from === 'x@parley.test');
    await alice.send(xml('message', { to: 'x@parley.test', type: 'chat', id: 'to-parley' }, xml('body', {}, 'anyone there?')));
    const seen = await firstConnection;
    // Prosody does not bind outgoing connections to its listening address: they come from 127.0.0.1.
    t.match(seen.remote, /^(::ffff:)?127\./, 'a loopback connection');
    t.match(seen.header, /to=['"]parley\.test['"]/, 'Prosody opened an s2s stream to parley.test');
    t.match(seen.header, /from=['"]prosody\.test['"]/);
    t.match(seen.header, /xmlns=['"]jabber:server['"]/);
    const error = await bounce;
    t.equal(error.attrs.id, 'to-parley', 'the queued message bounces when the peer hangs up');
    t.ok(error.getChild('error'), 'as an error');
  });

  t.test('a name outside the hosts file fails at once, without asking real DNS', async (t) => {
    const bounce = next(alice, (st) => st.is('message') && st.attrs.type === 'error' && st.attrs.from === 'x@nowhere.test');
    await alice.send(xml('message', { to: 'x@nowhere.test', type: 'chat', id: 'to-nowhere' }, xml('body', {}, 'hello?')));
    const error = await bounce;
    t.equal(error.attrs.id, 'to-nowhere');
    t.ok(error.getChild('error')?.getChild('remote-server-not-found', 'urn:ietf:params:xml:ns:xmpp-stanzas'), 'remote-server-not-found');
  });

  t.test('a test process killed outright leaves no Prosody behind', async (t) => {
    // A child process starts a Prosody, then dies by SIGKILL: no exit handler runs, so only the
    // guard's watch on its stdin can stop Prosody.
    const helper = new URL('../helpers/prosody.ts', import.meta.url).href;
    const script = [
      `import { startProsody } from ${JSON.stringify(helper)};`,
      `const p = await startProsody({ domain: 'orphan.test', ip: '${ORPHAN_IP}' });`,
      'console.log(`started ${p.dir}`);',
      "process.kill(process.pid, 'SIGKILL');",
    ].join('\n');
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, sig) => resolve(sig)));
    t.equal(signal, 'SIGKILL', 'the child died by SIGKILL');
    const dir = /started (\S+)/.exec(out)?.[1];
    t.ok(dir, 'after its Prosody had started');
    if (dir) rmSync(dir, { recursive: true, force: true });
    // Prosody takes a moment to shut down; poll until its c2s port (the helper's default) refuses.
    let listening = true;
    for (let i = 0; i < 100 && listening; i++) {
      listening = await canConnect(ORPHAN_IP, 15222);
      if (listening) await new Promise((r) => setTimeout(r, 100));
    }
    t.notOk(listening, 'the orphaned Prosody has stopped');
  });
}

const missing = prosodyMissing();
if (missing) {
  t.test("Prosody harness", { skip: missing }, () => {});
} else {
  await run();
}
