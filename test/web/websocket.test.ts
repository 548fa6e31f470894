// RFC 7395 XMPP over WebSocket, black-box: a real server, @xmpp/client's websocket transport and
// raw `ws` connections against a TCP user.
import t from 'tap';
import { WebSocket } from 'ws';
import { parse, type Element } from 'ltx';
import { client as xmppClient, xml } from '@xmpp/client';
import { RawClient } from '../helpers/raw-client.js';
import { XMPPJS_TIMEOUT_MS } from '../helpers/xmppjs.js';
import { startTestServer } from '../helpers/server.js';

// @xmpp/websocket uses the WHATWG WebSocket global, which Node 20 does not have by default.
(globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket;

const srv = await startTestServer({
  modules: '  disco: {}\n  roster: {}\n  presence: {}\n  host_meta: { websocket_url: "ws://{host}:5280/xmpp-websocket", bosh_url: "http://{host}:5280/http-bind" }\n'
    + '  websocket: { ping_interval: 300ms }',
  yaml: 'limits:\n  max_stanza_size: 20000\n  max_token_size: 10000',
});
t.teardown(() => srv.close());
await srv.register('alice', 'pw');
await srv.register('bob', 'pw');
const url = `ws://127.0.0.1:${srv.httpPort}/xmpp-websocket`;
const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';

/** A raw RFC 7395 client: frames in, parsed elements out. */
class RawWs {
  readonly frames: string[] = [];
  private waiters: Array<() => void> = [];
  closeCode: number | undefined;
  readonly closed: Promise<number>;
  constructor(readonly ws: WebSocket) {
    ws.on('message', (d) => {
      this.frames.push(d.toString());
      for (const w of this.waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code) => {
      this.closeCode = code;
      resolve(code);
      for (const w of this.waiters.splice(0)) w();
    }));
    ws.on('error', () => undefined);
  }

  static open(protocols: string | string[] = 'xmpp'): Promise<RawWs> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols);
      ws.once('open', () => resolve(new RawWs(ws)));
      ws.once('error', reject);
    });
  }

  send(text: string): void {
    this.ws.send(text);
  }

  /** The next frame (parsed), in order. */
  async next(timeoutMs = 3000): Promise<Element> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length === 0) {
      if (this.closeCode !== undefined) throw new Error(`closed (${this.closeCode})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timeout waiting for a frame');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return parse(this.frames.shift()!) as Element;
  }

  async nextNamed(name: string): Promise<Element> {
    for (;;) {
      const el = await this.next();
      if (el.name === name) return el;
    }
  }
}

t.test('@xmpp/client over WebSocket chats with a TCP user', async (t) => {
  const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'tcp' });
  const alice = xmppClient({ service: url, domain: 'localhost', username: 'alice', password: 'pw', resource: 'web', timeout: XMPPJS_TIMEOUT_MS });
  alice.on('error', () => undefined);
  // Stopped whatever happens: a client left after a failure keeps reconnecting.
  t.teardown(() => alice.stop().catch(() => undefined));
  const incoming: Element[] = [];
  alice.on('stanza', (st: Element) => {
    if (st.is('message')) incoming.push(st);
  });
  const address = await alice.start();
  t.equal(address.toString(), 'alice@localhost/web', 'bound over WebSocket');
  await alice.send(xml('presence'));
  await alice.send(xml('message', { to: 'bob@localhost/tcp', type: 'chat', id: 'w1' }, xml('body', {}, 'hello from the web')));
  const got = await bob.next((el) => el.name === 'message');
  t.equal(got.attrs.from, 'alice@localhost/web');
  t.equal(got.getChildText('body'), 'hello from the web');

  bob.send("<message to='alice@localhost/web' type='chat' id='t1'><body>hello from tcp</body></message>");
  const deadline = Date.now() + 3000;
  while (incoming.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(incoming[0]?.getChildText('body'), 'hello from tcp', 'the web client got the reply');
  t.equal(incoming[0]?.attrs.from, 'bob@localhost/tcp');
  await alice.stop();
  bob.end();
});

t.test('framing: <open/>, self-contained features, stanzas in jabber:client, <close/>', async (t) => {
  const c = await RawWs.open();
  t.equal(c.ws.protocol, 'xmpp', 'the xmpp subprotocol is selected');
  c.send(`<open xmlns='${NS_FRAMING}' to='localhost' version='1.0'/>`);
  const open = await c.next();
  t.equal(open.name, 'open');
  t.equal(open.attrs.xmlns, NS_FRAMING);
  t.equal(open.attrs.from, 'localhost');
  t.equal(open.attrs.version, '1.0');
  t.ok(open.attrs.id, 'a stream id');
  const raw = c.frames[0] ?? '';
  const features = await c.next();
  t.equal(features.name, 'stream:features');
  t.equal(features.attrs['xmlns:stream'], 'http://etherx.jabber.org/streams', 'the stream prefix is declared in the frame');
  t.notOk(features.getChild('starttls'), 'no STARTTLS over WebSocket');
  const mechs = features.getChild('mechanisms')?.getChildren('mechanism').map((m) => m.getText()) ?? [];
  t.ok(mechs.includes('PLAIN'), 'PLAIN is offered: the loopback connection counts as secure');
  t.notOk(raw.includes('<?xml'), 'no XML declaration in frames');

  c.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from('\0alice\0pw').toString('base64')}</auth>`);
  t.equal((await c.next()).name, 'success');
  c.send(`<open xmlns='${NS_FRAMING}' to='localhost' version='1.0'/>`);
  t.equal((await c.next()).name, 'open', 'the stream restarts with a new <open/>');
  const post = await c.next();
  t.ok(post.getChild('bind'), 'bind is offered after the restart');
  c.send("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>raw</resource></bind></iq>");
  const bound = await c.nextNamed('iq');
  t.equal(bound.attrs.xmlns, 'jabber:client', 'stanzas carry their namespace');
  t.equal(bound.getChild('bind')?.getChildText('jid'), 'alice@localhost/raw');

  c.send(`<close xmlns='${NS_FRAMING}'/>`);
  const close = await c.next();
  t.equal(close.name, 'close');
  t.equal(close.attrs.xmlns, NS_FRAMING);
  t.equal(await c.closed, 1000, 'the WebSocket closes normally');
});

t.test('a wrong framing namespace and an unknown host are stream errors', async (t) => {
  const c = await RawWs.open();
  c.send("<open xmlns='urn:wrong' to='localhost' version='1.0'/>");
  await c.next();
  const err = await c.next();
  t.equal(err.name, 'stream:error');
  t.ok(err.getChild('invalid-namespace'));
  t.equal((await c.next()).name, 'close');
  await c.closed;

  const d = await RawWs.open();
  d.send(`<open xmlns='${NS_FRAMING}' to='nowhere.test' version='1.0'/>`);
  await d.next();
  const err2 = await d.next();
  t.ok(err2.getChild('host-unknown'));
  await d.closed;
});

t.test('wrong or missing subprotocol is refused', async (t) => {
  await t.rejects(RawWs.open('foo'), /400/, 'another subprotocol gets 400');
  await t.rejects(RawWs.open([]), /400/, 'no subprotocol gets 400');
});

t.test('an oversize frame closes the connection cleanly; the server keeps serving', async (t) => {
  const c = await RawWs.open();
  c.send(`<open xmlns='${NS_FRAMING}' to='localhost' version='1.0'/>`);
  await c.next();
  await c.next();
  c.send(`<message to='bob@localhost'><body>${'x'.repeat(30000)}</body></message>`);
  t.equal(await c.closed, 1009, 'closed with 1009 (message too big)');
  const again = xmppClient({ service: url, domain: 'localhost', username: 'bob', password: 'pw', resource: 'again', timeout: XMPPJS_TIMEOUT_MS });
  again.on('error', () => undefined);
  t.teardown(() => again.stop().catch(() => undefined));
  t.equal((await again.start()).toString(), 'bob@localhost/again', 'a new WebSocket login works');
});

t.test('host-meta lists the WebSocket and BOSH endpoints with CORS', async (t) => {
  const res = await fetch(`http://127.0.0.1:${srv.httpPort}/.well-known/host-meta.json`, { headers: { Origin: 'https://web.example' } });
  t.equal(res.status, 200);
  t.equal(res.headers.get('access-control-allow-origin'), '*');
  const body = await res.json() as { links: Array<{ rel: string; href: string }> };
  const rels = Object.fromEntries(body.links.map((l) => [l.rel, l.href]));
  t.match(rels['urn:xmpp:alt-connections:websocket'], /\/xmpp-websocket$/);
  t.match(rels['urn:xmpp:alt-connections:xbosh'], /\/http-bind$/);
});

t.test('secure: tls refuses plain ws even from loopback', async (t) => {
  const strict = await startTestServer({ modules: '  websocket: { secure: tls }' });
  t.teardown(() => strict.close());
  const attempt = new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${strict.httpPort}/xmpp-websocket`, 'xmpp');
    ws.once('open', () => resolve('open'));
    ws.once('error', reject);
  });
  await t.rejects(attempt, /403/);
});
