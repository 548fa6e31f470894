// Interop with a real component library: Debian's slixmpp (ComponentXMPP) connects with its
// secret, receives a user's message to its domain and answers it; a wrong secret is refused.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

// Debian's python3-slixmpp lives beside Debian's python, not necessarily the first python3 on PATH.
const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const script = fileURLToPath(new URL('./slix_echo_component.py', import.meta.url));

const srv = await startTestServer({
  listen: ['  - port: 0', '    ip: 127.0.0.1', '    module: component'].join('\n'),
  yaml: 'components:\n  echo.test: { secret: slix-secret-0123456789 }',
});
t.teardown(() => srv.close());
await srv.register('alice', 'pw');
const port = srv.ports('component')[0]!;

/** Runs the echo component; `output` grows as it prints, `exit` resolves with its exit code. */
function runComponent(secret: string) {
  const child = spawn(python, [script, String(port), 'echo.test', secret], { stdio: ['ignore', 'pipe', 'pipe'] });
  const run = { output: '', exit: new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? 1))) };
  child.stdout.on('data', (d: Buffer) => {
    run.output += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    run.output += d.toString();
  });
  const timer = setTimeout(() => child.kill(), 30_000);
  void run.exit.then(() => clearTimeout(timer));
  return run;
}

async function until(probe: () => boolean, what: () => string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

t.test('slixmpp component echoes a user\'s message', async (t) => {
  const run = runComponent('slix-secret-0123456789');
  await until(() => run.output.includes('READY'), () => run.output);
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'slix' });
  alice.send("<message to='bot@echo.test' id='e1' type='chat'><body>Grüße &lt;&amp;&gt; 👋</body></message>");
  const reply = await alice.next((el) => el.name === 'message' && el.getChildText('body') !== null, 20_000);
  t.equal(reply.getChildText('body'), 'echo: Grüße <&> 👋', 'unicode and escaped characters intact');
  t.equal(reply.attrs.from, 'bot@echo.test');
  t.match(run.output, 'GOT alice@localhost/slix Grüße <&> 👋', 'the component saw the right from');
  alice.send("<message to='bot@echo.test' type='chat'><body>quit</body></message>");
  t.equal(await run.exit, 0, run.output);
  alice.end();
});

t.test('slixmpp component with a wrong secret is refused', async (t) => {
  const run = runComponent('wrong');
  const code = await run.exit;
  t.not(code, 0, 'the component gave up');
  t.notMatch(run.output, 'READY', 'no session started');
  t.notMatch(run.output, 'Traceback', 'refused, not crashed');
  t.match(await srv.server.stats(), /component echo\.test\tconnected=no/);
});
