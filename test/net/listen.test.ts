// TCP listener for XMPP streams: per-address and total limits, dual stack, close().
import net from 'node:net';
import t from 'tap';
import { BootError } from '../../lib/errors.js';
import { silentLogger } from '../../lib/log.js';
import { listenTcp } from '../../lib/net/listen.js';

/** Connects and reports whether the server greeted us ('hi') or closed without a word. */
function connect(port: number, host = '127.0.0.1'): Promise<{ socket: net.Socket; greeted: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host);
    socket.once('data', () => resolve({ socket, greeted: true }));
    socket.once('close', () => resolve({ socket, greeted: false }));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') resolve({ socket, greeted: false });
      else reject(err);
    });
  });
}

const closed = (s: net.Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));

t.test('per-address limit closes the excess at once and frees the slot on close', async (t) => {
  const accepted: net.Socket[] = [];
  const debug: string[] = [];
  const log = { ...silentLogger, debug: (msg: string) => void debug.push(msg), child: () => log };
  const listener = await listenTcp({
    port: 0,
    ip: '127.0.0.1',
    log,
    maxConnections: 100,
    maxConnectionsPerIp: 2,
    onConnection: (socket) => {
      accepted.push(socket);
      t.equal(socket.remoteAddress, '127.0.0.1');
      socket.write('hi');
    },
  });
  t.teardown(() => listener.close());
  t.ok(listener.port > 0, 'ephemeral port reported');

  const a = await connect(listener.port);
  const b = await connect(listener.port);
  t.ok(a.greeted && b.greeted, 'two connections accepted');
  const c = await connect(listener.port);
  t.notOk(c.greeted, 'the third from the same address is closed');
  t.equal(accepted.length, 2, 'the handler never saw it');
  t.ok(debug.some((m) => /too many/.test(m)), 'logged at debug');

  a.socket.destroy();
  await closed(accepted[0]!);
  const d = await connect(listener.port);
  t.ok(d.greeted, 'a slot is free again after one closes');

  const ends = [b.socket, d.socket].map(closed);
  await listener.close();
  await Promise.all(ends);
  t.pass('close() destroys the accepted connections');
  await t.rejects(connect(listener.port), { code: 'ECONNREFUSED' }, 'no longer listening');
});

t.test('maxConnections caps the listener', async (t) => {
  const listener = await listenTcp({
    port: 0,
    ip: '127.0.0.1',
    log: silentLogger,
    maxConnections: 1,
    maxConnectionsPerIp: 0,
    onConnection: (socket) => socket.write('hi'),
  });
  t.teardown(() => listener.close());
  const a = await connect(listener.port);
  t.ok(a.greeted);
  t.teardown(() => a.socket.destroy());
  t.notOk((await connect(listener.port)).greeted, 'second refused');
});

t.test("'::' accepts IPv4 as well (dual stack)", async (t) => {
  const seen: string[] = [];
  const listener = await listenTcp({
    port: 0,
    ip: '::',
    log: silentLogger,
    maxConnections: 10,
    maxConnectionsPerIp: 1,
    onConnection: (socket) => {
      seen.push(socket.remoteAddress ?? '');
      socket.write('hi');
    },
  });
  t.teardown(() => listener.close());
  const a = await connect(listener.port, '127.0.0.1');
  t.ok(a.greeted, 'IPv4 client accepted');
  t.teardown(() => a.socket.destroy());
  t.match(seen[0], /^(::ffff:)?127\.0\.0\.1$/);
  t.notOk((await connect(listener.port, '127.0.0.1')).greeted, 'the per-address limit applies to mapped addresses too');
});

t.test('a handler that throws costs only its connection', async (t) => {
  let calls = 0;
  const listener = await listenTcp({
    port: 0,
    ip: '127.0.0.1',
    log: silentLogger,
    maxConnections: 10,
    maxConnectionsPerIp: 10,
    onConnection: (socket) => {
      if (++calls === 1) throw new Error('boom');
      socket.write('hi');
    },
  });
  t.teardown(() => listener.close());
  t.notOk((await connect(listener.port)).greeted);
  const ok = await connect(listener.port);
  t.ok(ok.greeted, 'still accepting');
  ok.socket.destroy();
});

t.test('listen failure is BootError LISTEN_FAILED naming ip:port', async (t) => {
  const first = await listenTcp({ port: 0, ip: '127.0.0.1', log: silentLogger, maxConnections: 0, maxConnectionsPerIp: 0, onConnection: (s) => s.destroy() });
  t.teardown(() => first.close());
  const err = await listenTcp({ port: first.port, ip: '127.0.0.1', log: silentLogger, maxConnections: 0, maxConnectionsPerIp: 0, onConnection: () => {} }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, BootError);
  t.match(err, { code: 'LISTEN_FAILED', message: `cannot listen on 127.0.0.1:${first.port}: address already in use` });
  const bad = await listenTcp({ port: 0, ip: '203.0.113.7', log: silentLogger, maxConnections: 0, maxConnectionsPerIp: 0, onConnection: () => {} }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.match(bad, { code: 'LISTEN_FAILED', message: /^cannot listen on 203\.0\.113\.7:0: / }, 'an address this machine does not have');
});
