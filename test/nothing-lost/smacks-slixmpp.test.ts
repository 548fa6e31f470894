// Interop: slixmpp's own XEP-0198 implementation against ours. It enables stream management with
// resumption, loses its connection, and resumes; a message sent while it was away arrives after
// <resumed/>, and nothing it already had is sent twice (its `h` is understood).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { startTestServer } from '../helpers/server.js';
import { SmClient, hasBody } from '../fixtures/nl-client.js';

const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const script = fileURLToPath(new URL('../fixtures/nl-slix-sm.py', import.meta.url));

const srv = await startTestServer({
  // No acks asked by the server: what slixmpp has is known only from the h it resumes with.
  modules: '  ping: {}\n  offline: {}\n  smacks:\n    request_every: 1000\n    request_delay: 0',
});
t.teardown(() => srv.close());
await srv.register('alice', 'pw');
await srv.register('bob', 'pw');

async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('slixmpp resumes its session and gets what was sent while it was away', async (t) => {
  const bob = await SmClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'b' });
  const child = spawn(python, [script, String(srv.c2sPort), 'alice@localhost/slix', 'pw', 'bob@localhost/b'],
    { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.teardown(() => {
    child.kill();
  });
  const lines = () => out.split('\n');

  await until(() => lines().includes('ENABLED true'), 'slixmpp enabled resumable stream management');
  const session = () => srv.server.sessions.get('alice@localhost', 'slix');
  await until(() => session()?.available === true, 'slixmpp is available');
  const original = session()!;
  bob.send("<message to='alice@localhost/slix' type='chat'><body>m1</body></message>"
    + "<message to='alice@localhost/slix' type='chat'><body>m2</body></message>");
  await until(() => lines().includes('DROPPED'), 'slixmpp dropped its connection');
  await until(() => original.hibernating, 'the session hibernates');
  bob.send("<message to='alice@localhost/slix' type='chat'><body>m3</body></message>");
  await until(() => original.stats().unacked >= 1, 'm3 is queued');
  child.stdin.write('go\n');
  const thanks = await bob.next((el) => hasBody(el) && el.getChildText('body') === 'thanks', 15_000);
  t.equal(thanks.attrs.from, 'alice@localhost/slix', 'the same resource after resumption');
  const code = await exited;
  t.equal(code, 0, out);
  t.ok(lines().includes('RESUMED'), 'slixmpp saw <resumed/>');
  t.same(lines().filter((l) => l.startsWith('GOT ')), ['GOT m1', 'GOT m2', 'GOT m3'],
    'each message once: its h covered m1 and m2, m3 came after <resumed/>');
  t.equal(srv.server.sessions.get('alice@localhost', 'slix'), undefined, 'gone after its clean close');
  bob.end();
});
