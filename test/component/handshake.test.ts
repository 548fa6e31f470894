// XEP-0114 stream set-up: header, handshake, and every way it can go wrong.
import tls from 'node:tls';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';
import { componentHeader, connectComponent, digest, headerOf, openComponentStream } from '../helpers/component-client.js';

const SECRET = 'a-long-random-secret-0123456789';
const srv = await startTestServer({
  listen: ['  - port: 0', '    ip: 127.0.0.1', '    module: component'].join('\n'),
  yaml: [
    'components:',
    `  gw.test: { secret: ${SECRET} }`,
    '  other.test: { secret: other }',
    'limits:',
    '  component_handshake_timeout: 1s',
    '  max_stanza_size: 10000',
    '  max_token_size: 5000',
  ].join('\n'),
});
t.teardown(() => srv.close());
const port = srv.ports('component')[0]!;

t.test('the right secret is accepted', async (t) => {
  const c = await connectComponent(port, 'gw.test', SECRET);
  t.equal(c.answer, 'handshake', 'empty <handshake/> answers a good handshake');
  t.equal(c.from, 'gw.test', 'the header comes from the component domain');
  t.match(c.streamId, /^[0-9a-f]{32}$/, 'a random stream id');
  const again = await openComponentStream(port, 'other.test');
  t.not(again.streamId, c.streamId, 'each stream gets a fresh id');
  again.client.destroy();
  t.match(await srv.server.stats(), /component gw\.test\tconnected=yes/);
  c.client.end();
  await c.client.closed();
});

t.test('the digest may be written in upper case', async (t) => {
  const open = await openComponentStream(port, 'other.test');
  open.client.send(`<handshake>${digest(open.streamId, 'other').toUpperCase()}</handshake>`);
  t.equal((await open.client.next()).name, 'handshake');
  open.client.end();
  await open.client.closed();
});

t.test('a wrong secret is refused with not-authorized', async (t) => {
  const c = await connectComponent(port, 'gw.test', 'wrong');
  t.equal(c.answer, 'not-authorized');
  await c.client.closed();
  t.ok(c.client.isClosed, 'the stream is closed');
  t.match(await srv.server.stats(), /component gw\.test\tconnected=no/);
});

t.test('a handshake computed for another stream id is refused', async (t) => {
  const open = await openComponentStream(port, 'gw.test');
  open.client.send(`<handshake>${digest('not-this-stream', SECRET)}</handshake>`);
  t.equal(await open.client.streamError(), 'not-authorized');
  await open.client.closed();
});

t.test('an unknown domain gets host-unknown', async (t) => {
  const open = await openComponentStream(port, 'nobody.test');
  t.equal(await open.client.streamError(), 'host-unknown');
  await open.client.closed();
});

t.test('a host of the server is not a component domain', async (t) => {
  const open = await openComponentStream(port, 'localhost');
  t.equal(await open.client.streamError(), 'host-unknown');
  await open.client.closed();
});

t.test('a second connection for a connected domain is refused with conflict; the first stays', async (t) => {
  const first = await connectComponent(port, 'gw.test', SECRET);
  t.equal(first.answer, 'handshake');
  const second = await connectComponent(port, 'gw.test', SECRET);
  t.equal(second.answer, 'conflict');
  await second.client.closed();
  // The first stream still works: an iq to the server is answered.
  first.client.send("<iq type='get' id='p1' from='gw.test' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
  const pong = await first.client.nextNamed('iq', 'p1');
  t.equal(pong.attrs.type, 'result');
  first.client.end();
  await first.client.closed();
  // Once the first is gone the domain is free again.
  const third = await connectComponent(port, 'gw.test', SECRET);
  t.equal(third.answer, 'handshake');
  third.client.end();
  await third.client.closed();
});

t.test('a stanza before the handshake gets not-authorized', async (t) => {
  const open = await openComponentStream(port, 'gw.test');
  open.client.send("<message from='gw.test' to='alice@localhost'><body>early</body></message>");
  t.equal(await open.client.streamError(), 'not-authorized');
  await open.client.closed();
});

t.test('a stream in the client namespace gets invalid-namespace', async (t) => {
  const c = await RawClient.connect(port);
  c.send(componentHeader('gw.test', 'jabber:client'));
  t.equal(await c.streamError(), 'invalid-namespace');
  await c.closed();
});

t.test('no handshake in time closes the stream with connection-timeout', async (t) => {
  const open = await openComponentStream(port, 'gw.test');
  t.equal(await open.client.streamError(3000), 'connection-timeout');
  await open.client.closed();
});

t.test('bad XML gets not-well-formed', async (t) => {
  const c = await connectComponent(port, 'gw.test', SECRET);
  c.client.send('<message from="gw.test" to="alice@localhost"><body></message>');
  t.equal(await c.client.streamError(), 'not-well-formed');
  await c.client.closed();
});

t.test('a stanza over limits.max_stanza_size gets policy-violation', async (t) => {
  const c = await connectComponent(port, 'gw.test', SECRET);
  c.client.send(`<message from='gw.test' to='alice@localhost'><body>${'x'.repeat(12000)}</body></message>`);
  t.equal(await c.client.streamError(), 'policy-violation');
  await c.client.closed();
});

t.test('a header without to gets host-unknown', async (t) => {
  const c = await RawClient.connect(port);
  c.send("<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>");
  await headerOf(c);
  t.equal(await c.streamError(), 'host-unknown');
  await c.closed();
});

t.test('a Direct TLS component listener', async (t) => {
  const tlsSrv = await startTestServer({
    listen: ['  - port: 0', '    ip: 127.0.0.1', '    module: component', '    tls: true'].join('\n'),
    yaml: 'components:\n  gw.test: { secret: tls-secret }',
  });
  t.teardown(() => tlsSrv.close());
  const socket = tls.connect({ port: tlsSrv.ports('component')[0]!, host: '127.0.0.1', rejectUnauthorized: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  let received = '';
  socket.on('data', (d: Buffer) => {
    received += d.toString();
  });
  socket.write(componentHeader('gw.test'));
  const id = await waitFor(() => /id='([0-9a-f]+)'/.exec(received)?.[1]);
  socket.write(`<handshake>${digest(id, 'tls-secret')}</handshake>`);
  await waitFor(() => (received.includes('<handshake/>') ? true : undefined));
  t.pass('handshake over TLS');
  socket.destroy();
});

async function waitFor<T>(probe: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

t.test('max_connections_per_ip applies to component listeners', async (t) => {
  const limited = await startTestServer({
    listen: ['  - port: 0', '    ip: 127.0.0.1', '    module: component', '    max_connections_per_ip: 1'].join('\n'),
    yaml: 'components:\n  gw.test: { secret: s }',
  });
  t.teardown(() => limited.close());
  const p = limited.ports('component')[0]!;
  const first = await connectComponent(p, 'gw.test', 's');
  t.equal(first.answer, 'handshake');
  const second = await RawClient.connect(p);
  await second.closed();
  t.equal(second.headers, 0, 'the second connection from the address is dropped unanswered');
  first.client.end();
  await first.client.closed();
});
