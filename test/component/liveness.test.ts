// A silent component is pinged, and dropped when it stays silent, so the domain is free again
// for a restarted component (a second connection is refused while the first holds the domain).
import t from 'tap';
import { connectComponent } from '../helpers/component-client.js';
import { startTestServer } from '../helpers/server.js';

const SECRET = 'liveness-secret-0123456789';
const srv = await startTestServer({
  listen: ['  - port: 0', '    ip: 127.0.0.1', '    module: component'].join('\n'),
  yaml: ['components:', `  gw.test: { secret: ${SECRET} }`, 'limits:', '  component_ping_interval: 300ms'].join('\n'),
});
t.teardown(() => srv.close());
const port = srv.ports('component')[0]!;

t.test('a component that answers pings stays; one that stops is dropped and can reconnect', async (t) => {
  const c = await connectComponent(port, 'gw.test', SECRET);
  t.equal(c.answer, 'handshake');
  for (let i = 0; i < 3; i++) {
    const ping = await c.client.next((el) => el.name === 'iq' && el.getChild('ping', 'urn:xmpp:ping') !== undefined, 3000);
    t.equal(ping.attrs.to, 'gw.test');
    t.equal(ping.attrs.from, 'localhost');
    c.client.send(`<iq type='result' id='${ping.attrs.id}' from='gw.test' to='localhost'/>`);
  }
  t.notOk(c.client.isClosed, 'still connected after answering three pings');

  const second = await connectComponent(port, 'gw.test', SECRET);
  t.equal(second.answer, 'conflict', 'the domain is held while the component answers');

  // Now silent: one more ping, then the stream is closed.
  await c.client.next((el) => el.name === 'iq', 3000);
  t.equal(await c.client.streamError(3000), 'connection-timeout');
  await c.client.closed();

  const third = await connectComponent(port, 'gw.test', SECRET);
  t.equal(third.answer, 'handshake', 'the restarted component gets the domain');
  third.client.destroy();
});
