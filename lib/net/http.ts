// The shared HTTP(S) listener (default port 5443): plugins mount handlers at path prefixes
// (/upload/, /xmpp-websocket, /http-bind, /.well-known/host-meta, /api/). One listener, one
// certificate store, one set of limits, and a failing handler costs one response, never the process.
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type stream from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Logger } from '../log.js';
import type { CertStore } from './certs.js';
import { bindServer, closeServer, formatAddress } from './listen.js';

export interface HttpRequestContext {
  /** The rest of the path after the mount prefix, starting with '/' (still percent-encoded). */
  path: string;
  url: URL;
  log: Logger;
  maxBodySize: number;
}

export type HttpHandler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  ctx: HttpRequestContext,
) => void | Promise<void>;

export type UpgradeHandler = (req: http.IncomingMessage, socket: stream.Duplex, head: Buffer) => void;

export interface MountOptions {
  /** Default: the router's maxBodySize (limits.http_max_body_size). */
  maxBodySize?: number;
}

/** Thrown by handlers (and readBody) to answer with this status and message as text/plain. */
export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'HttpError';
  }
}

interface Mount<H> {
  /** The prefix without its trailing slash: '/upload/' and '/upload' are the same mount. */
  base: string;
  prefix: string;
  handler: H;
  maxBodySize: number;
}

function mountBase(prefix: string): string {
  if (!prefix.startsWith('/')) throw new Error(`HTTP mount prefix must start with '/': '${prefix}'`);
  return prefix.replace(/\/+$/, '');
}

/** Does the path fall under this mount? Whole segments only: '/upload' covers '/upload/x', not '/uploads'. */
function underBase(pathname: string, base: string): boolean {
  return base === '' || pathname === base || pathname.startsWith(base + '/');
}

/**
 * The request URL. Origin-form targets are appended to the authority rather than resolved
 * against it: resolving '//evil/x' would read 'evil' as a host name.
 */
function requestUrl(req: http.IncomingMessage): URL | undefined {
  const target = req.url ?? '/';
  const scheme = (req.socket as Partial<TLSSocket>).encrypted ? 'https' : 'http';
  if (!target.startsWith('/')) {
    // Absolute-form (proxies) is accepted; '*' and anything else is not a resource here.
    try {
      const url = new URL(target);
      return url.protocol === 'http:' || url.protocol === 'https:' ? url : undefined;
    } catch {
      return undefined;
    }
  }
  for (const host of [req.headers.host, 'localhost']) {
    if (!host) continue;
    try {
      return new URL(`${scheme}://${host}${target}`);
    } catch {
      // An unusable Host header: the path still routes.
    }
  }
  return undefined;
}

export function sendText(res: http.ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  const body = Buffer.from(text, 'utf8');
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': String(body.length),
    'X-Content-Type-Options': 'nosniff',
    ...headers,
  });
  // Node leaves the body out of HEAD responses by itself.
  res.end(body);
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const data = Buffer.from(JSON.stringify(body), 'utf8');
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': String(data.length),
    'X-Content-Type-Options': 'nosniff',
    ...headers,
  });
  res.end(data);
}

/**
 * Reads the whole body, at most `limit` bytes. A larger Content-Length is refused before reading
 * anything; a chunked body that grows past the limit stops being read at that point
 * (HttpError 413). A client that goes away mid-body gives HttpError 400.
 */
export function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      reject(new HttpError(413, `request body larger than ${limit} bytes`));
      return;
    }
    if (req.readableEnded) {
      resolve(Buffer.alloc(0));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const fail = (err: HttpError) => {
      if (settled) return;
      settled = true;
      cleanup();
      reject(err);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // Stop pulling: the error response closes the connection instead of draining the rest.
        req.pause();
        fail(new HttpError(413, `request body larger than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      if (settled) return;
      settled = true;
      cleanup();
      resolve(Buffer.concat(chunks, size));
    };
    const onError = () => fail(new HttpError(400, 'request aborted'));
    const onClose = () => {
      if (!req.complete) fail(new HttpError(400, 'request aborted'));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/** Ends a raw upgrade socket with a bare HTTP error response. */
function rejectUpgrade(socket: stream.Duplex, status: number, reason: string): void {
  if (socket.writable) {
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  }
  // end() flushes the response; the socket must not linger if the peer never closes its side.
  const timer = setTimeout(() => socket.destroy(), 1000);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

export class HttpRouter {
  private readonly log: Logger;
  private readonly maxBodySize: number;
  /** Longest base first, so the most specific mount wins. */
  private mounts: Array<Mount<HttpHandler>> = [];
  private upgrades: Array<Mount<UpgradeHandler>> = [];

  constructor(options: { log: Logger; maxBodySize: number }) {
    this.log = options.log;
    this.maxBodySize = options.maxBodySize;
  }

  /** Mount at a path prefix like '/upload/' (longest prefix wins); returns an unmount function. Mounting an already mounted prefix throws. */
  mount(prefix: string, handler: HttpHandler, options: MountOptions = {}): () => void {
    const entry: Mount<HttpHandler> = {
      base: mountBase(prefix),
      prefix,
      handler,
      maxBodySize: options.maxBodySize ?? this.maxBodySize,
    };
    this.mounts = this.add(this.mounts, entry, 'HTTP');
    return () => {
      this.mounts = this.mounts.filter((m) => m !== entry);
    };
  }

  /** Mount a handler for HTTP upgrade requests (WebSocket) at a prefix; returns an unmount function. */
  mountUpgrade(prefix: string, handler: UpgradeHandler): () => void {
    const entry: Mount<UpgradeHandler> = { base: mountBase(prefix), prefix, handler, maxBodySize: 0 };
    this.upgrades = this.add(this.upgrades, entry, 'HTTP upgrade');
    return () => {
      this.upgrades = this.upgrades.filter((m) => m !== entry);
    };
  }

  /** Mounted request prefixes, longest first (for logs and status). */
  prefixes(): string[] {
    return this.mounts.map((m) => m.prefix);
  }

  private add<H>(list: Array<Mount<H>>, entry: Mount<H>, kind: string): Array<Mount<H>> {
    const existing = list.find((m) => m.base === entry.base);
    if (existing) throw new Error(`${kind} path '${entry.prefix}' is already mounted (as '${existing.prefix}')`);
    // A new array each time: a request being routed keeps the list it started with.
    return [...list, entry].sort((a, b) => b.base.length - a.base.length);
  }

  private match<H>(list: Array<Mount<H>>, pathname: string): Mount<H> | undefined {
    return list.find((m) => underBase(pathname, m.base));
  }

  handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = requestUrl(req);
    if (!url) {
      sendText(res, 400, 'bad request target');
      return;
    }
    const mount = this.match(this.mounts, url.pathname);
    if (!mount) {
      sendText(res, 404, 'not found');
      return;
    }
    const ctx: HttpRequestContext = {
      path: url.pathname.slice(mount.base.length) || '/',
      url,
      log: this.log,
      maxBodySize: mount.maxBodySize,
    };
    let result: void | Promise<void>;
    try {
      result = mount.handler(req, res, ctx);
    } catch (err) {
      this.fail(req, res, mount, err);
      return;
    }
    if (result && typeof result.then === 'function') {
      result.then(undefined, (err: unknown) => this.fail(req, res, mount, err));
    }
  }

  private fail(req: http.IncomingMessage, res: http.ServerResponse, mount: Mount<HttpHandler>, err: unknown): void {
    const expected = err instanceof HttpError;
    if (!expected) {
      this.log.error('HTTP handler failed', { prefix: mount.prefix, method: req.method, url: req.url, err: err as Error });
    }
    if (res.headersSent) {
      // Part of a response is out: cutting the connection is the only honest signal left.
      res.destroy();
      return;
    }
    // An unread body would otherwise be drained before the next request on this connection.
    const headers: Record<string, string> = req.complete ? {} : { Connection: 'close' };
    if (expected) sendText(res, err.status, err.message, headers);
    else sendText(res, 500, 'internal server error', headers);
  }

  handleUpgrade(req: http.IncomingMessage, socket: stream.Duplex, head: Buffer): void {
    // The handler adds its own; this one keeps an early reset from crashing the process.
    socket.on('error', (err) => this.log.debug('upgrade socket error', { err: err.message }));
    const url = requestUrl(req);
    const mount = url && this.match(this.upgrades, url.pathname);
    if (!mount) {
      rejectUpgrade(socket, url ? 404 : 400, url ? 'Not Found' : 'Bad Request');
      return;
    }
    try {
      mount.handler(req, socket, head);
    } catch (err) {
      this.log.error('HTTP upgrade handler failed', { prefix: mount.prefix, url: req.url, err: err as Error });
      rejectUpgrade(socket, 500, 'Internal Server Error');
    }
  }
}

export interface HttpListenerOptions {
  port: number;
  ip: string;
  tls?: CertStore;
  router: HttpRouter;
  log: Logger;
  limits: {
    maxHeaderSize: number;
    /** Milliseconds; 0: no limit. */
    requestTimeout: number;
    headersTimeout: number;
    /** 0: every response closes its connection. */
    keepAliveTimeout: number;
    maxConnections: number;
  };
}

export interface HttpListener {
  port: number;
  close(): Promise<void>;
}

export async function startHttpListener(o: HttpListenerOptions): Promise<HttpListener> {
  const { limits } = o;
  // Node refuses a headers timeout longer than the request timeout; the request timeout bounds both.
  const headersTimeout = limits.requestTimeout > 0 && limits.headersTimeout > limits.requestTimeout
    ? limits.requestTimeout
    : limits.headersTimeout;
  const shortest = [limits.requestTimeout, headersTimeout].filter((n) => n > 0);
  const httpOptions: http.ServerOptions = {
    // Requests whose header block is larger are answered 431 by Node itself.
    maxHeaderSize: limits.maxHeaderSize,
    requestTimeout: limits.requestTimeout,
    headersTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    // Node checks the two timeouts above on this interval (30 s by default); short limits need a finer one.
    connectionsCheckingInterval: Math.max(250, Math.min(30_000, Math.floor(Math.min(...shortest, 60_000) / 2))),
    noDelay: true,
  };
  const server: http.Server = o.tls
    ? https.createServer({ ...o.tls.serverOptions(), ...httpOptions, minVersion: 'TLSv1.2' })
    : http.createServer(httpOptions);
  if (limits.maxConnections > 0) server.maxConnections = limits.maxConnections;

  // Raw TCP sockets, including upgraded ones the HTTP server no longer tracks, for close().
  const sockets = new Set<net.Socket>();
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const keepAlive = limits.keepAliveTimeout > 0;
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    // Node reads keepAliveTimeout 0 as "keep idle connections forever"; for us it means none.
    if (!keepAlive) res.shouldKeepAlive = false;
    o.router.handle(req, res);
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: stream.Duplex, head: Buffer) => o.router.handleUpgrade(req, socket, head));
  if (o.tls) {
    server.on('tlsClientError', (err: Error) => o.log.debug('TLS handshake failed', { err: err.message }));
  }

  const port = await bindServer(server, o.port, o.ip, o.log);
  server.on('error', (err) => o.log.error('HTTP listener error', { err }));
  o.log.info('HTTP listening', { address: formatAddress(o.ip, port), tls: Boolean(o.tls) });
  return {
    port,
    close: () => closeServer(server, sockets),
  };
}
