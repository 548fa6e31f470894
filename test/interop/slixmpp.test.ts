// Interop with a real client library from Debian: slixmpp logs in over STARTTLS with SCRAM-SHA-1
// and with SCRAM-SHA-256 and chats with a raw client.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

// Debian's python3-slixmpp lives beside Debian's python, not necessarily the first python3 on PATH.
const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const script = fileURLToPath(new URL('../fixtures/slix_chat.py', import.meta.url));

// slixmpp always sends channel-binding data it can compute: asked to use a mechanism without
// -PLUS on a server that offers -PLUS, it says `y` and is rightly refused as a downgrade. The
// plain SCRAM logins therefore run against a server that offers no channel binding; the default
// server is covered below with slixmpp choosing its own mechanism.
const srv = await startTestServer({ auth: '  channel_binding: []' });
t.teardown(() => srv.close());
await srv.register('alice', 'päss wörd');
await srv.register('bob', 'pw');

for (const mechanism of ['SCRAM-SHA-1', 'SCRAM-SHA-256']) {
  t.test(`slixmpp with ${mechanism}`, async (t) => {
    const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'b' });
    const text = `Grüße <&> 👋 via ${mechanism}`;
    const child = new Promise<{ code: number; out: string }>((resolve) => {
      execFile(python, [script, String(srv.c2sPort), 'alice@localhost/slix', 'päss wörd', mechanism, 'bob@localhost/b', text],
        { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
    });
    const msg = await bob.next((el) => el.name === 'message' && el.getChildText('body') !== null, 25_000);
    t.equal(msg.getChildText('body'), text, 'unicode and escaped characters intact');
    t.equal(msg.attrs.from, 'alice@localhost/slix');
    bob.send(`<message to='alice@localhost/slix' type='chat'><body>réponse &amp; 🎉</body></message>`);
    const { code, out } = await child;
    t.equal(code, 0, out);
    t.match(out, 'REPLY réponse & 🎉');
    bob.end();
  });
}

t.test('stock slixmpp on the default server picks a -PLUS mechanism and logs in', async (t) => {
  const def = await startTestServer();
  t.teardown(() => def.close());
  await def.register('alice', 'päss wörd');
  await def.register('bob', 'pw');
  const bob = await RawClient.login(def.c2sPort, 'bob', 'pw', { resource: 'b' });
  const child = new Promise<{ code: number; out: string }>((resolve) => {
    execFile(python, [script, String(def.c2sPort), 'alice@localhost/slix', 'päss wörd', 'auto', 'bob@localhost/b', 'hello'],
      { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
  });
  const msg = await bob.next((el) => el.name === 'message' && el.getChildText('body') === 'hello', 25_000);
  t.ok(msg);
  bob.send("<message to='alice@localhost/slix' type='chat'><body>ok</body></message>");
  const { code, out } = await child;
  t.equal(code, 0, out);
  bob.end();
});

t.test('slixmpp with a wrong password fails cleanly', async (t) => {
  const out = await new Promise<string>((resolve) => {
    execFile(python, [script, String(srv.c2sPort), 'alice@localhost/slix', 'wrong', 'SCRAM-SHA-256', 'bob@localhost', 'x'],
      { timeout: 30_000 }, (_err, stdout) => resolve(stdout));
  });
  t.match(out, 'AUTH FAILED');
});
