// Interop with @xmpp/client (xmpp.js): SCRAM-SHA-1 over STARTTLS, two users chatting.
import { client, xml } from '@xmpp/client';
import t from 'tap';
import { createLogger, type LogFields } from '../../lib/log.js';
import { startTestServer } from '../helpers/server.js';
import { XMPPJS_TIMEOUT_MS } from '../helpers/xmppjs.js';

// The test server's certificate is self-signed; xmpp.js uses Node's default TLS verification.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

const lines: LogFields[] = [];
const log = createLogger({ level: 'info', format: 'json', write: (l) => lines.push(JSON.parse(l) as LogFields) });
const srv = await startTestServer({ log });
t.teardown(() => srv.close());
await srv.register('alice', 'secret');
await srv.register('bob', 'secret');

function connect(user: string) {
  const x = client({ service: `xmpp://127.0.0.1:${srv.c2sPort}`, domain: 'localhost', username: user, password: 'secret', resource: 'js', timeout: XMPPJS_TIMEOUT_MS });
  x.on('error', () => undefined);
  return x;
}

t.test('two @xmpp/client users exchange messages', async (t) => {
  const alice = connect('alice');
  const bob = connect('bob');
  // Stopped whatever happens: a client left after a failure keeps reconnecting, and the test
  // process would then never end.
  t.teardown(async () => {
    for (const x of [alice, bob]) await x.stop().catch(() => undefined);
  });
  await alice.start();
  await bob.start();
  await alice.send(xml('presence'));
  await bob.send(xml('presence'));
  const text = 'Unicode ✓ 日本 & <xml> "quoted"';
  const received = new Promise<string>((resolve) => {
    bob.on('stanza', (st) => {
      if (st.is('message') && st.getChildText('body')) resolve(`${st.attrs.from}|${st.getChildText('body')}`);
    });
  });
  await alice.send(xml('message', { to: 'bob@localhost', type: 'chat' }, xml('body', {}, text)));
  t.equal(await received, `alice@localhost/js|${text}`);
  const mechanisms = lines.filter((l) => l.msg === 'authenticated').map((l) => l.mechanism);
  t.same(mechanisms, ['SCRAM-SHA-1', 'SCRAM-SHA-1'], 'xmpp.js used SCRAM-SHA-1');
});

t.test('logs never contain passwords or SASL payloads', async (t) => {
  const all = JSON.stringify(lines);
  t.notMatch(all, 'secret');
  t.ok(lines.some((l) => typeof l.session === 'string'), 'lines carry a session id');
});
