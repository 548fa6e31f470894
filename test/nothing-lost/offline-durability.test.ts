// Durability of the offline spool (issue 6 acceptance): the server process is killed with
// SIGKILL after the stored messages were written to the recipient but before it acknowledged
// them; after a restart on the same data directory, the messages are delivered again.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { startTestServer } from '../helpers/server.js';
import { SmClient, bodies, hasBody, stanzaIdOf } from '../fixtures/nl-client.js';

const bin = fileURLToPath(new URL('../../bin/parley.js', import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'parley-nl-durable-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const modules = '  ping: {}\n  smacks:\n    request_delay: 0\n  offline: {}';

/** A port that was free a moment ago: the child process must listen on a known one. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function configText(dataDir: string, port: number): string {
  return [
    'hosts: [localhost]',
    `data_dir: ${JSON.stringify(dataDir)}`,
    'listen:',
    `  - port: ${port}`,
    '    ip: 127.0.0.1',
    '    module: c2s',
    'auth:',
    '  scram_iterations: 4096',
    'log:',
    '  format: json',
    'modules:',
    modules,
  ].join('\n');
}

function startChild(config: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [bin, '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start: ${err}`)), 30_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('server started')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited with ${String(code)}: ${err}`));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

let pings = 0;
async function ping(c: SmClient): Promise<void> {
  const id = `p${++pings}`;
  c.send(`<iq type='get' id='${id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
  await c.nextNamed('iq', id);
}

t.test('kill -9 after delivery, before the ack: delivered again after the restart', async (t) => {
  const dataDir = path.join(dir, 'data');
  mkdirSync(dataDir);
  // Accounts are created with an in-process server on the same data directory, then it stops.
  const setup = await startTestServer({ dataDir, modules });
  await setup.register('alice', 'pw');
  await setup.register('bob', 'pw');
  await setup.close();

  const port = await freePort();
  const config = path.join(dir, 'durable.yml');
  writeFileSync(config, configText(dataDir, port));
  let child = await startChild(config);
  t.teardown(() => {
    child.kill('SIGKILL');
  });

  const alice = await SmClient.login(port, 'alice', 'pw', { resource: 'a' });
  alice.send("<message to='bob@localhost' type='chat'><body>one</body></message>"
    + "<message to='bob@localhost' type='chat'><body>two</body></message>"
    + "<message to='bob@localhost' type='chat'><body>three</body></message>");
  await ping(alice);
  const bob = await SmClient.login(port, 'bob', 'pw', { resource: 'phone', sm: true });
  const first = await bob.messages(3);
  t.same(bodies(first), ['one', 'two', 'three'], 'delivered, not acknowledged');

  child.kill('SIGKILL');
  await exited(child);
  await Promise.all([bob.closed(), alice.closed()]);
  t.equal(child.signalCode, 'SIGKILL', 'the server died without any shutdown');

  child = await startChild(config);
  const again = await SmClient.login(port, 'bob', 'pw', { resource: 'phone', sm: true });
  const second = await again.messages(3);
  t.same(bodies(second), ['one', 'two', 'three'], 'delivered again after the restart');
  t.same(second.map((m) => stanzaIdOf(m, 'bob@localhost')), first.map((m) => stanzaIdOf(m, 'bob@localhost')),
    'the same stored messages');
  again.ack();
  await ping(again);
  again.end();
  await again.closed();

  const third = await SmClient.login(port, 'bob', 'pw', { resource: 'phone', sm: true });
  await ping(third);
  t.ok(await third.nothing(hasBody), 'acknowledged ones are gone, also across a restart');
  third.end();
  child.kill('SIGTERM');
  await exited(child);
});
