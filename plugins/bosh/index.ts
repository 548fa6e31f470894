// XEP-0124 BOSH with XEP-0206 XMPP over BOSH. Each BOSH session drives a C2SSession through a
// FramedTransport: payloads of client requests are written into the session's stream, and what
// the session writes is queued and flushed into the held ("long-polling") request.
//
// The endpoint exists once per HTTP listener while the plugin is loaded per host: the first
// loaded instance mounts it with its options, every instance registers its host, and a session
// may only be created for a registered host.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { parse, type Element } from 'ltx';
import { s } from '../../lib/config/schema.js';
import { readBody, HttpError, type HttpRequestContext } from '../../lib/net/http.js';
import { definePlugin } from '../../lib/plugin/types.js';
import type { Logger } from '../../lib/log.js';
import type { ServerApi } from '../../lib/server-api.js';
import {
  FramedTransport, HostRegistry, connectionSecure, domainOf, originAllowed, perServer, type OutgoingFrame,
} from '../../lib/session/framed-transport.js';
import { escapeAttr, serialize } from '../../lib/xml/serialize.js';
import { NS_STREAM } from '../../lib/xml/ns.js';

const NS_HTTPBIND = 'http://jabber.org/protocol/httpbind';
const NS_XBOSH = 'urn:xmpp:xbosh';
const BOSH_VERSION = '1.11';

interface Options {
  path: string;
  max_wait: number;
  max_hold: number;
  inactivity: number;
  polling: number;
  secure: 'tls' | 'loopback' | 'always';
  origins: string[];
}

interface Shared {
  registry: HostRegistry<true>;
  sessions: Map<string, BoshSession>;
}
const servers = new WeakMap<object, Shared>();

interface Held {
  rid: number;
  res: ServerResponse;
  timer: NodeJS.Timeout | undefined;
}

/** A request that came before its turn (a lower rid is still missing). */
interface Pending {
  body: Element;
  res: ServerResponse;
}

function terminateBody(condition?: string, children = ''): string {
  const cond = condition ? ` condition='${condition}'` : '';
  return `<body xmlns='${NS_HTTPBIND}' type='terminate'${cond}${children ? ` xmlns:stream='${NS_STREAM}'>${children}</body>` : '/>'}`;
}

function parseRid(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,16}$/.test(value)) return undefined;
  const n = Number(value);
  // XEP-0124 §14.1: rids stay below 2^53 so that clients in any language can count them.
  return Number.isSafeInteger(n) ? n : undefined;
}

function intAttr(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,9}$/.test(value)) return undefined;
  return Number(value);
}

class BoshSession {
  readonly sid = randomBytes(16).toString('hex');
  readonly transport: FramedTransport;
  /** Highest rid processed in order. */
  private lastRid: number;
  private readonly held: Held[] = [];
  private readonly pending = new Map<number, Pending>();
  /** Recent responses by rid, resent when the client repeats a request (XEP-0124 §14.3). */
  private readonly responses = new Map<number, string>();
  private queue: string[] = [];
  private queuedBytes = 0;
  private flushScheduled = false;
  /** The first response carries the session attributes (XEP-0124 §7.1). */
  private created = false;
  private streamClosed = false;
  private streamError = false;
  private ended = false;
  private inactivityTimer: NodeJS.Timeout | undefined;
  private lastEmptyAt = 0;
  readonly requests: number;

  constructor(
    readonly host: string,
    readonly to: string,
    firstRid: number,
    readonly waitS: number,
    readonly hold: number,
    private readonly lang: string,
    private readonly options: Options,
    private readonly sessions: Map<string, BoshSession>,
    private readonly log: Logger,
    remoteAddress: string | undefined,
    private readonly cors: Record<string, string>,
  ) {
    this.lastRid = firstRid - 1;
    this.requests = hold + 1;
    this.transport = new FramedTransport({
      remoteAddress,
      allowHost: () => true,
      sink: {
        frame: (f) => this.onFrame(f),
        end: () => this.onStreamEnd(),
        destroy: () => this.onDestroy(),
        buffered: () => this.queuedBytes,
      },
    });
    this.transport.on('error', (err) => log.debug('bosh transport error', { err: err.message }));
  }

  start(server: ServerApi): void {
    server.createClientSession(this.transport, { secure: true });
    this.transport.open({ to: this.to, version: '1.0', 'xml:lang': this.lang });
  }

  // ---------- what the C2S session writes ----------

  private onFrame(frame: OutgoingFrame): void {
    // The stream header has no BOSH equivalent: the session attributes already say it all.
    if (frame.type === 'open') return;
    if (frame.type === 'close') {
      this.streamClosed = true;
    } else {
      if (frame.xml.startsWith('<stream:error')) this.streamError = true;
      this.queue.push(frame.xml);
      this.queuedBytes += frame.xml.length;
    }
    this.scheduleFlush();
  }

  private onStreamEnd(): void {
    this.streamClosed = true;
    this.scheduleFlush();
  }

  private onDestroy(): void {
    if (this.ended) return;
    // Torn down without the stream's end (inactivity, server stop): answer what is held.
    this.streamClosed = true;
    this.flush();
    this.finish();
  }

  /** Several writes in one turn (a stanza and an SM request) go out in one response. */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.held.length > 0 && (this.queue.length > 0 || this.streamClosed)) {
      const h = this.held.shift()!;
      if (this.streamClosed) {
        // The end of the stream: everything left, in a terminate body (XEP-0206 §... stream errors
        // travel inside it, with condition remote-stream-error).
        const payload = this.takeQueue();
        this.respond(h, terminateBody(this.streamError ? 'remote-stream-error' : undefined, payload));
        for (const other of this.held.splice(0)) this.respond(other, terminateBody());
        this.finish();
        return;
      }
      this.respond(h, this.body(this.takeQueue()));
    }
    this.armInactivity();
  }

  private takeQueue(): string {
    const out = this.queue.join('');
    this.queue = [];
    this.queuedBytes = 0;
    return out;
  }

  private body(payload: string): string {
    let attrs = `xmlns='${NS_HTTPBIND}' xmlns:stream='${NS_STREAM}'`;
    if (!this.created) {
      this.created = true;
      attrs += ` sid='${this.sid}' wait='${this.waitS}' hold='${this.hold}' requests='${this.requests}'`
        + ` inactivity='${Math.ceil(this.options.inactivity / 1000)}' polling='${Math.ceil(this.options.polling / 1000)}'`
        + ` from='${escapeAttr(this.host)}' ver='${BOSH_VERSION}' xmpp:version='1.0' xmlns:xmpp='${NS_XBOSH}' xmpp:restartlogic='true'`;
    }
    return payload ? `<body ${attrs}>${payload}</body>` : `<body ${attrs}/>`;
  }

  private respond(h: Held, text: string): void {
    clearTimeout(h.timer);
    this.responses.set(h.rid, text);
    // Keep as many as the client may have outstanding: older rids can no longer be repeated.
    for (const rid of this.responses.keys()) if (rid <= this.lastRid - this.requests) this.responses.delete(rid);
    send(h.res, 200, text, this.cors);
  }

  private finish(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.inactivityTimer);
    for (const h of this.held.splice(0)) this.respond(h, terminateBody());
    for (const p of this.pending.values()) send(p.res, 200, terminateBody(), this.cors);
    this.pending.clear();
    this.sessions.delete(this.sid);
    if (!this.transport.destroyed) this.transport.destroy();
  }

  /** XEP-0124 §8: with no request held the client has `inactivity` to send the next one. */
  private armInactivity(): void {
    clearTimeout(this.inactivityTimer);
    this.inactivityTimer = undefined;
    if (this.ended || this.held.length > 0) return;
    this.inactivityTimer = setTimeout(() => {
      this.log.debug('bosh session inactive', { sid: this.sid });
      this.transport.destroy();
    }, this.options.inactivity);
    this.inactivityTimer.unref();
  }

  // ---------- client requests ----------

  /** A request of this session: in order, repeated, early (buffered) or out of the window. */
  request(body: Element, res: ServerResponse): void {
    const rid = parseRid(body.attrs.rid);
    if (rid === undefined) {
      send(res, 200, terminateBody('bad-request'), this.cors);
      this.terminate();
      return;
    }
    clearTimeout(this.inactivityTimer);
    this.inactivityTimer = undefined;
    if (rid <= this.lastRid) {
      const old = this.responses.get(rid);
      if (old !== undefined) {
        send(res, 200, old, this.cors);
        this.armInactivity();
        return;
      }
      const waiting = this.held.find((h) => h.rid === rid);
      if (waiting) {
        // The client gave up on the connection of a held request: this one takes its place.
        send(waiting.res, 200, `<body xmlns='${NS_HTTPBIND}'/>`, this.cors);
        waiting.res = res;
        return;
      }
      send(res, 200, terminateBody('item-not-found'), this.cors);
      this.terminate();
      return;
    }
    if (rid > this.lastRid + this.requests) {
      // XEP-0124 §14.2: outside the window the client may have open.
      send(res, 200, terminateBody('item-not-found'), this.cors);
      this.terminate();
      return;
    }
    const superseded = this.pending.get(rid);
    // A repeated early request: the newer connection is the one the client still waits on.
    if (superseded) send(superseded.res, 200, `<body xmlns='${NS_HTTPBIND}'/>`, this.cors);
    this.pending.set(rid, { body, res });
    // Process everything that is now in order.
    for (let next = this.pending.get(this.lastRid + 1); next; next = this.pending.get(this.lastRid + 1)) {
      this.pending.delete(this.lastRid + 1);
      this.lastRid++;
      this.process(this.lastRid, next.body, next.res);
      if (this.ended) return;
    }
  }

  private process(rid: number, body: Element, res: ServerResponse): void {
    const children = body.children.filter((c): c is Element => typeof c !== 'string');
    if (this.hold === 0 && children.length === 0 && body.attrs.type === undefined && body.attrs['xmpp:restart'] === undefined) {
      // XEP-0124 §12: polling sessions may not send empty requests faster than `polling`.
      const now = Date.now();
      if (this.lastEmptyAt > 0 && now - this.lastEmptyAt < this.options.polling) {
        send(res, 200, terminateBody('policy-violation'), this.cors);
        this.terminate();
        return;
      }
      this.lastEmptyAt = now;
    }
    for (const child of children) this.transport.pushText(serialize(child));
    if (body.attrs['xmpp:restart'] === 'true') {
      // XEP-0206 §5: a restart request stands for a new stream header to the same domain.
      this.transport.open({ to: this.to, version: '1.0', 'xml:lang': this.lang });
    }
    const held: Held = { rid, res, timer: undefined };
    if (body.attrs.type === 'terminate') {
      // The client's end of the stream: the session closes it and answers with its own end,
      // which flushes into this request as the terminate response.
      this.held.push(held);
      this.transport.closeStream();
      return;
    }
    held.timer = setTimeout(() => {
      const i = this.held.indexOf(held);
      if (i < 0) return;
      this.held.splice(i, 1);
      this.respond(held, this.body(this.takeQueue()));
      this.armInactivity();
    }, this.waitS * 1000);
    held.timer.unref();
    // A client that goes away takes its held request with it; nothing queued is lost.
    res.once('close', () => {
      if (res.writableEnded) return;
      const i = this.held.indexOf(held);
      if (i >= 0) {
        clearTimeout(held.timer);
        this.held.splice(i, 1);
        this.armInactivity();
      }
    });
    this.held.push(held);
    // At most `hold` requests wait; the oldest goes back (empty or with data) to make room.
    while (this.held.length > this.hold) {
      const oldest = this.held.shift()!;
      this.respond(oldest, this.body(this.takeQueue()));
    }
    if (this.queue.length > 0 || this.streamClosed) this.scheduleFlush();
  }

  /** Ends the session for a protocol error: the C2S session ends with its connection. */
  private terminate(): void {
    this.finish();
  }
}

function send(res: ServerResponse, status: number, text: string, cors: Record<string, string>): void {
  if (res.writableEnded || res.destroyed) return;
  const data = Buffer.from(text, 'utf8');
  res.writeHead(status, {
    ...cors,
    'Content-Type': 'text/xml; charset=utf-8',
    'Content-Length': String(data.length),
    'Cache-Control': 'no-store',
  });
  res.end(data);
}

function corsHeaders(req: IncomingMessage, origins: readonly string[]): Record<string, string> {
  const origin = req.headers.origin;
  const any = origins.length === 0 || origins.includes('*');
  return {
    'Access-Control-Allow-Origin': any ? '*' : origin ?? 'null',
    'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
    'Access-Control-Allow-Headers': 'Content-Type',
    'Access-Control-Max-Age': '86400',
    ...(any ? {} : { Vary: 'Origin' }),
  };
}

function handler(server: ServerApi, shared: Shared, options: Options, log: Logger) {
  const origins = options.origins.map((o) => o.toLowerCase().replace(/\/$/, ''));
  return async (req: IncomingMessage, res: ServerResponse, ctx: HttpRequestContext): Promise<void> => {
    const cors = corsHeaders(req, origins);
    if (ctx.path !== '/') throw new HttpError(404, 'not found');
    if (!originAllowed(req.headers.origin, origins)) throw new HttpError(403, 'origin not allowed');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...cors, Allow: 'GET, POST, OPTIONS', 'Content-Length': '0' });
      res.end();
      return;
    }
    if (req.method === 'GET' || req.method === 'HEAD') {
      const text = 'XMPP over BOSH (XEP-0124, XEP-0206): POST <body/> requests here\n';
      res.writeHead(200, { ...cors, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': String(Buffer.byteLength(text)) });
      res.end(text);
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { ...cors, Allow: 'GET, POST, OPTIONS', 'Content-Length': '0' });
      res.end();
      return;
    }
    const raw = await readBody(req, ctx.maxBodySize);
    let body: Element;
    try {
      body = parse(raw.toString('utf8')) as Element;
    } catch {
      send(res, 200, terminateBody('bad-request'), cors);
      return;
    }
    if (body.name !== 'body' || body.attrs.xmlns !== NS_HTTPBIND) {
      send(res, 200, terminateBody('bad-request'), cors);
      return;
    }
    const sid = body.attrs.sid;
    if (sid !== undefined) {
      const session = shared.sessions.get(sid);
      if (!session) {
        send(res, 200, terminateBody('item-not-found'), cors);
        return;
      }
      session.request(body, res);
      return;
    }
    // Session creation (XEP-0124 §7.1, XEP-0206 §4).
    const rid = parseRid(body.attrs.rid);
    const to = body.attrs.to;
    const wait = intAttr(body.attrs.wait);
    const hold = intAttr(body.attrs.hold);
    if (rid === undefined || !to || wait === undefined || hold === undefined) {
      send(res, 200, terminateBody('bad-request'), cors);
      return;
    }
    if (!body.attrs['xmpp:version'] || parseFloat(body.attrs['xmpp:version']) < 1) {
      // XEP-0206 §4: without xmpp:version the client does not speak XMPP 1.0 over BOSH.
      send(res, 200, terminateBody('undefined-condition'), cors);
      return;
    }
    const host = domainOf(to);
    if (!shared.registry.has(host)) {
      send(res, 200, terminateBody('host-unknown'), cors);
      return;
    }
    if (!connectionSecure(req, options.secure)) {
      // STARTTLS is impossible inside BOSH: the HTTP connection itself must be encrypted.
      send(res, 200, terminateBody('policy-violation'), cors);
      return;
    }
    const session = new BoshSession(
      host, to, rid, Math.max(1, Math.min(wait, Math.floor(options.max_wait / 1000))), Math.min(hold, options.max_hold),
      body.attrs['xml:lang'] ?? 'en', options, shared.sessions, log, req.socket.remoteAddress, cors,
    );
    shared.sessions.set(session.sid, session);
    session.start(server);
    session.request(body, res);
  };
}

export default definePlugin({
  name: 'bosh',
  xeps: [
    { xep: 124, version: '1.11', status: 'partial', note: 'no key sequencing (optional), no ack reporting; multiple streams per session not supported' },
    { xep: 206, version: '1.4', status: 'complete' },
  ],
  options: s.object({
    path: s.string({
      default: '/http-bind',
      check: (v) => (v.startsWith('/') ? undefined : "must start with '/'"),
      doc: 'HTTP path of the BOSH endpoint on the http listener(s) (the first host loading the plugin decides)',
    }),
    max_wait: s.duration({ default: '60s', min: '1s', doc: "longest a request is held waiting for data (caps the client's wait)" }),
    max_hold: s.int({ default: 1, min: 0, max: 5, doc: "most requests held at once (caps the client's hold; requests = hold + 1)" }),
    inactivity: s.duration({ default: '60s', min: '1ms', doc: 'a session with no request held for this long is ended' }),
    polling: s.duration({
      default: '2s', min: '0s', doc: 'shortest interval between empty requests of a polling session (hold 0); faster ends it',
    }),
    secure: s.enum(['tls', 'loopback', 'always'] as const, {
      default: 'loopback',
      doc: 'which connections count as encrypted (required: STARTTLS is impossible here): tls = https only; '
        + 'loopback = also plain http from this machine (a TLS proxy in front); always = any (a proxy elsewhere)',
    }),
    origins: s.array(s.string(), {
      default: [],
      doc: "Origins allowed by CORS (e.g. https://chat.example.com); empty or '*' = any",
    }),
  }),
  setup(ctx) {
    const server = ctx.server;
    const shared = perServer(servers, server, () => ({ registry: new HostRegistry<true>(), sessions: new Map() }));
    const mount = (): void => {
      ctx.http(ctx.options.path, handler(server, shared, ctx.options, ctx.log));
    };
    shared.registry.add(ctx.host, true, mount, (fn) => ctx.onClose(fn));
  },
});
