// The shared HTTP(S) listener: routing by prefix, error isolation, body and header limits, TLS, upgrades.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import t, { type Test } from 'tap';
import { BootError } from '../../lib/errors.js';
import { silentLogger } from '../../lib/log.js';
import { loadCertificates } from '../../lib/net/certs.js';
import { HttpError, HttpRouter, readBody, sendJson, sendText, startHttpListener } from '../../lib/net/http.js';

const limits = { maxHeaderSize: 4096, requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 1_000, maxConnections: 50 };

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(port: number, target: string, o: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: target, method: o.method ?? 'GET', headers: o.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
      res.on('close', () => {
        if (!res.complete) reject(new Error('response cut off'));
      });
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

async function start(t: Test, router: HttpRouter, extra: Partial<typeof limits> = {}) {
  const listener = await startHttpListener({ port: 0, ip: '127.0.0.1', router, log: silentLogger, limits: { ...limits, ...extra } });
  t.teardown(() => listener.close());
  return listener;
}

t.test('mount, longest prefix, unmount, 404', async (t) => {
  const router = new HttpRouter({ log: silentLogger, maxBodySize: 1000 });
  const { port } = await start(t, router);
  const unmountA = router.mount('/a/', (_req, res, ctx) => sendText(res, 200, `a ${ctx.path} ${ctx.url.searchParams.get('q') ?? ''}`));
  const unmountAB = router.mount('/a/b/', (_req, res, ctx) => sendJson(res, 200, { mount: 'ab', path: ctx.path }));
  router.mount('/.well-known/host-meta', (_req, res, ctx) => sendText(res, 200, `hm ${ctx.path}`));
  router.mount('/.well-known/host-meta.json', (_req, res) => sendText(res, 200, 'hm json'));

  t.match(await request(port, '/a/x?q=1'), { status: 200, body: 'a /x 1', headers: { 'content-type': 'text/plain; charset=utf-8' } });
  t.match(await request(port, '/a'), { status: 200, body: 'a / ' }, 'prefix without its slash');
  const ab = await request(port, '/a/b/c/d');
  t.equal(ab.status, 200);
  t.same(JSON.parse(ab.body), { mount: 'ab', path: '/c/d' }, 'longest prefix wins');
  t.match(ab.headers['content-type'], /^application\/json/);
  t.match(await request(port, '/ab'), { status: 404 }, 'whole segments only');
  t.match(await request(port, '/nothing'), { status: 404, body: 'not found' });
  t.match(await request(port, '//evil.example/a/x'), { status: 404 }, 'a double slash is a path, not a host');
  t.match(await request(port, '/.well-known/host-meta'), { body: 'hm /' });
  t.match(await request(port, '/.well-known/host-meta.json'), { body: 'hm json' });
  t.match(await request(port, '/a/x', { method: 'HEAD' }), { status: 200, body: '' }, 'HEAD gets no body');

  t.throws(() => router.mount('/a/b', () => {}), /already mounted/, 'same prefix twice');
  t.throws(() => router.mount('a/', () => {}), /must start with/);
  unmountAB();
  t.match(await request(port, '/a/b/c'), { body: 'a /b/c ' }, 'after unmount the shorter prefix serves');
  unmountAB();
  router.mount('/a/b/', (_req, res) => sendText(res, 201, 'again'));
  t.match(await request(port, '/a/b/c'), { status: 201 }, 'mountable again after unmount');
  unmountA();
  t.match(await request(port, '/a/x'), { status: 404 });
});

t.test('failing handlers answer 500 (or their HttpError) and the server keeps serving', async (t) => {
  const errors: string[] = [];
  const log = { ...silentLogger, error: (msg: string) => void errors.push(msg), child: () => log };
  const router = new HttpRouter({ log, maxBodySize: 1000 });
  const { port } = await start(t, router);
  router.mount('/throw', () => {
    throw new Error('sync boom');
  });
  router.mount('/reject', async () => {
    await new Promise((r) => setTimeout(r, 5));
    throw new Error('async boom');
  });
  router.mount('/teapot', async () => {
    throw new HttpError(418, 'short and stout');
  });
  router.mount('/half', async (_req, res) => {
    res.writeHead(200, { 'Content-Length': '100' });
    res.write('partial');
    throw new Error('after headers');
  });
  router.mount('/ok', (_req, res) => sendText(res, 200, 'fine'));

  t.match(await request(port, '/throw'), { status: 500, body: 'internal server error' });
  t.match(await request(port, '/reject'), { status: 500 });
  t.match(await request(port, '/teapot'), { status: 418, body: 'short and stout' });
  t.equal(errors.length, 2, 'unexpected errors are logged, HttpError is not');
  await t.rejects(request(port, '/half'), 'a response already begun is cut off');
  t.match(await request(port, '/ok'), { status: 200, body: 'fine' }, 'still serving');
});

t.test('readBody: limits by Content-Length and while streaming', async (t) => {
  const router = new HttpRouter({ log: silentLogger, maxBodySize: 64 });
  const { port } = await start(t, router);
  // How the request stream stood when readBody gave up: null = never read, false = paused.
  let flowingAtError: boolean | null | undefined;
  router.mount('/echo', async (req, res, ctx) => {
    const body = await readBody(req, ctx.maxBodySize).catch((err: unknown) => {
      flowingAtError = req.readableFlowing;
      throw err;
    });
    sendText(res, 200, `${body.length}:${body.toString()}`);
  });
  router.mount('/big', async (req, res, ctx) => sendText(res, 200, String((await readBody(req, ctx.maxBodySize)).length)), { maxBodySize: 1000 });

  t.match(await request(port, '/echo', { method: 'POST', body: 'hello' }), { status: 200, body: '5:hello' });
  t.match(await request(port, '/echo', { method: 'POST', body: 'x'.repeat(64) }), { status: 200 }, 'exactly the limit');
  t.match(await request(port, '/big', { method: 'POST', body: 'x'.repeat(500) }), { status: 200, body: '500' }, 'per-mount limit');

  flowingAtError = undefined;
  const declared = await request(port, '/echo', { method: 'POST', body: 'x'.repeat(65) });
  t.match(declared, { status: 413, headers: { connection: 'close' } }, 'Content-Length over the limit');
  t.equal(flowingAtError, null, 'refused before reading the body');

  // Chunked: the server must answer while the client is still sending, and stop reading.
  flowingAtError = undefined;
  const streamed = await new Promise<{ status: number; sent: number }>((resolve, reject) => {
    let sent = 0;
    let answered = false;
    const req = http.request({ host: '127.0.0.1', port, path: '/echo', method: 'POST', agent: false }, (res) => {
      answered = true;
      res.resume();
      resolve({ status: res.statusCode ?? 0, sent });
      req.destroy();
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    const pump = () => {
      if (answered) return;
      if (sent > 100_000) {
        reject(new Error('no answer while streaming'));
        return;
      }
      req.write('y'.repeat(16));
      sent += 16;
      setTimeout(pump, 5);
    };
    pump();
  });
  t.equal(streamed.status, 413, 'chunked body over the limit');
  t.ok(streamed.sent < 1000, `answered early (${streamed.sent} bytes sent)`);
  t.equal(flowingAtError, false, 'stopped reading at the limit');

  // A client that disconnects mid-body: the handler gets 400 and nothing crashes.
  const aborted = new Promise<unknown>((resolve) => {
    router.mount('/abort', async (req, res) => {
      const err = await readBody(req, 1000).then(() => undefined, (e: unknown) => e);
      resolve(err);
      if (!res.destroyed) sendText(res, 200, 'late');
    });
  });
  const sock = net.connect(port, '127.0.0.1');
  sock.on('error', () => {});
  sock.write('POST /abort HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\npartial');
  setTimeout(() => sock.destroy(), 50);
  const abortErr = await aborted;
  t.type(abortErr, HttpError);
  t.equal((abortErr as HttpError).status, 400);
  t.match(await request(port, '/echo', { method: 'POST', body: 'ok' }), { body: '2:ok' });
});

t.test('oversized header block gets 431', async (t) => {
  const router = new HttpRouter({ log: silentLogger, maxBodySize: 64 });
  const { port } = await start(t, router, { maxHeaderSize: 2048 });
  router.mount('/', (_req, res) => sendText(res, 200, 'root'));
  t.match(await request(port, '/', { headers: { 'X-Small': 'a'.repeat(500) } }), { status: 200, body: 'root' });
  t.match(await request(port, '/', { headers: { 'X-Big': 'a'.repeat(4000) } }), { status: 431 });
});

t.test('HTTPS with the generated certificate', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'parley-https-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const certs = await loadCertificates({ certfiles: [], hosts: ['localhost'], dataDir: dir, log: silentLogger });
  const ca = readFileSync(path.join(dir, 'certs', 'selfsigned.pem'), 'utf8');
  const router = new HttpRouter({ log: silentLogger, maxBodySize: 64 });
  router.mount('/upload/', (_req, res, ctx) => sendText(res, 200, `secure ${ctx.url.protocol} ${ctx.path}`));
  const listener = await startHttpListener({ port: 0, ip: '127.0.0.1', tls: certs, router, log: silentLogger, limits });
  t.teardown(() => listener.close());

  const reply = await new Promise<{ status: number; body: string; protocol: string | null; authorized: boolean }>((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', servername: 'localhost', port: listener.port, path: '/upload/f.jpg', ca, agent: false }, (res) => {
      const socket = res.socket as TLSSocket;
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, protocol: socket.getProtocol(), authorized: socket.authorized }));
    });
    req.on('error', reject);
    req.end();
  });
  t.match(reply, { status: 200, body: 'secure https: /f.jpg', authorized: true });
  t.match(reply.protocol, /^TLSv1\.[23]$/);
  await t.rejects(request(listener.port, '/upload/x'), 'plain HTTP on the TLS port fails');
});

function upgrade(port: number, target: string): Promise<{ socket?: net.Socket; status?: number; head?: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: target, agent: false, headers: { Connection: 'Upgrade', Upgrade: 'echo' } });
    req.on('upgrade', (_res, socket, head) => resolve({ socket, head }));
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode });
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('upgrade routing, and close() ends upgraded connections too', async (t) => {
  const router = new HttpRouter({ log: silentLogger, maxBodySize: 64 });
  const listener = await startHttpListener({ port: 0, ip: '127.0.0.1', router, log: silentLogger, limits });
  let closed = false;
  t.teardown(() => (closed ? undefined : listener.close()));
  router.mountUpgrade('/xmpp-websocket', (req, socket) => {
    socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
    socket.write(`hello ${req.url}`);
    socket.pipe(socket);
  });
  router.mountUpgrade('/broken', () => {
    throw new Error('upgrade boom');
  });
  t.throws(() => router.mountUpgrade('/xmpp-websocket/', () => {}), /already mounted/);
  router.mount('/xmpp-websocket', (_req, res) => sendText(res, 426, 'upgrade required'));

  t.match(await request(listener.port, '/xmpp-websocket'), { status: 426 }, 'plain requests route separately');
  t.match(await upgrade(listener.port, '/nowhere'), { status: 404 }, 'no upgrade mount: 404');
  t.match(await upgrade(listener.port, '/broken'), { status: 500 });

  const up = await upgrade(listener.port, '/xmpp-websocket?x=1');
  t.ok(up.socket, 'upgraded');
  const socket = up.socket!;
  const received: string[] = [];
  if (up.head?.length) received.push(up.head.toString());
  socket.on('data', (c: Buffer) => received.push(c.toString()));
  socket.write('ping');
  await t.resolveMatch(new Promise((r) => {
    const check = () => (received.join('').includes('ping') ? r(received.join('')) : setTimeout(check, 5));
    check();
  }), 'hello /xmpp-websocket?x=1ping');

  const ended = new Promise<void>((r) => socket.once('close', () => r()));
  const started = Date.now();
  closed = true;
  await listener.close();
  await ended;
  t.ok(Date.now() - started < 5000, 'close() does not wait for the connection');
  await t.rejects(request(listener.port, '/xmpp-websocket'), 'no longer listening');
});

t.test('listen failure is a one-line BootError naming the address', async (t) => {
  const router = new HttpRouter({ log: silentLogger, maxBodySize: 64 });
  const first = await start(t, router);
  const err = await startHttpListener({ port: first.port, ip: '127.0.0.1', router, log: silentLogger, limits }).then(() => undefined, (e: unknown) => e);
  t.type(err, BootError);
  t.equal((err as BootError).code, 'LISTEN_FAILED');
  t.match((err as BootError).message, new RegExp(`127\\.0\\.0\\.1:${first.port}: address already in use`));
});

t.test('maxConnections is applied', async (t) => {
  const router = new HttpRouter({ log: silentLogger, maxBodySize: 64 });
  const { port } = await start(t, router, { maxConnections: 1 });
  router.mount('/', (_req, res) => sendText(res, 200, 'root'));
  const holder = net.connect(port, '127.0.0.1');
  holder.on('error', () => {});
  t.teardown(() => holder.destroy());
  await new Promise((r) => holder.once('connect', r));
  await new Promise((r) => setTimeout(r, 50));
  await t.rejects(request(port, '/'), 'second connection refused while the first is open');
  holder.destroy();
  await new Promise((r) => setTimeout(r, 50));
  t.match(await request(port, '/'), { status: 200 });
});

t.test('keepAliveTimeout 0 closes each connection after its response', async (t) => {
  const router = new HttpRouter({ log: silentLogger, maxBodySize: 64 });
  router.mount('/', (_req, res) => sendText(res, 200, 'root'));
  const off = await start(t, router, { keepAliveTimeout: 0 });
  const on = await start(t, router);
  const agent = new http.Agent({ keepAlive: true });
  t.teardown(() => agent.destroy());
  const viaAgent = (port: number) => new Promise<string | undefined>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.headers.connection));
    }).on('error', reject);
  });
  t.equal(await viaAgent(off.port), 'close');
  t.equal(await viaAgent(on.port), 'keep-alive');
});
