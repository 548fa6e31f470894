// The adapter between a framed transport (RFC 7395 WebSocket, XEP-0206 BOSH) and C2SSession:
// the session reads and writes an RFC 6120 stream as if it were a TCP socket, and this Duplex
// translates. That keeps one implementation of SASL, binding, stream management and routing
// for every transport.
//
// C2SSession writes the stream header with one write(), every element with one write() and
// `</stream:stream>` at the end; each write is classified here (open / element / close) and
// handed to the transport's sink, which frames it its own way. Incoming, the transport gives
// the stream's text: a WebSocket `<open/>` becomes a stream header and `<close/>` the end tag,
// so the session's own parser, limits and checks see a regular stream.
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { parse, type Element } from 'ltx';
import type { ClientStream } from '../server-api.js';
import { escapeAttr } from '../xml/serialize.js';
import { NS_CLIENT, NS_STREAM } from '../xml/ns.js';

export const NS_FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';
const NS_STREAMS_ERRORS = 'urn:ietf:params:xml:ns:xmpp-streams';

/** What the session wrote, one write at a time. */
export type OutgoingFrame =
  /** The stream header; attrs are from, id, version, xml:lang (and to), still XML-escaped. */
  | { type: 'open'; attrs: Record<string, string> }
  /** One top-level element, made self-contained (namespaces declared on it). */
  | { type: 'element'; xml: string }
  /** `</stream:stream>`. */
  | { type: 'close' };

export interface FrameSink {
  frame(frame: OutgoingFrame): void;
  /** The session ended its side of the stream (after its close frame). */
  end(): void;
  /** The stream is torn down: drop the connection. */
  destroy(): void;
  /** Bytes written but not yet delivered to the client (the session closes slow readers). */
  buffered(): number;
  /** The session stops reading (backpressure) / reads again. */
  pause?(): void;
  resume?(): void;
}

export interface FramedTransportOptions {
  remoteAddress: string | undefined;
  sink: FrameSink;
  /** Whether a stream may be opened to this domain here (the plugin is enabled on that host). */
  allowHost(domain: string): boolean;
}

/** Attributes of the header C2SSession writes: `<?xml version='1.0'?><stream:stream a='v' ...>`. */
function headerAttrs(text: string): Record<string, string> {
  const attrs: Record<string, string> = {};
  const start = text.indexOf('<stream:stream');
  for (const m of text.slice(start).matchAll(/([\w:.-]+)=(?:'([^']*)'|"([^"]*)")/g)) {
    const name = m[1]!;
    if (name === 'xmlns' || name.startsWith('xmlns:')) continue;
    attrs[name] = m[2] ?? m[3] ?? '';
  }
  return attrs;
}

/** Index of the '>' ending the first start tag, skipping quoted attribute values. */
function startTagEnd(text: string): number {
  let quote = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (c === quote) quote = '';
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '>') return i;
  }
  return -1;
}

/**
 * Makes one written element stand alone: each frame (or BOSH payload child) is parsed apart from
 * any stream header, so `stream:` elements need their prefix declared (RFC 7395 §3.3.2) and
 * stanzas their jabber:client namespace (RFC 7395 §3.5, XEP-0206 §6).
 */
export function selfContained(text: string): string {
  const end = startTagEnd(text);
  if (end < 0) return text;
  const nameMatch = /^<([\w:.-]+)/.exec(text);
  if (!nameMatch) return text;
  const name = nameMatch[1]!;
  const tag = text.slice(0, end);
  const insertAt = name.length + 1;
  if (name.startsWith('stream:')) {
    if (/\sxmlns:stream=/.test(tag)) return text;
    return `${text.slice(0, insertAt)} xmlns:stream='${NS_STREAM}'${text.slice(insertAt)}`;
  }
  if ((name === 'message' || name === 'presence' || name === 'iq') && !/\sxmlns=/.test(tag)) {
    return `${text.slice(0, insertAt)} xmlns='${NS_CLIENT}'${text.slice(insertAt)}`;
  }
  return text;
}

/** The RFC 6120 stream header equivalent to an opening (RFC 7395 `<open/>`, BOSH session). */
export function streamHeader(attrs: Record<string, string | undefined>, streamNs = NS_STREAM): string {
  let out = `<stream:stream xmlns='${NS_CLIENT}' xmlns:stream='${escapeAttr(streamNs)}'`;
  for (const name of ['to', 'from', 'version', 'xml:lang']) {
    const v = attrs[name];
    if (v !== undefined) out += ` ${name}='${escapeAttr(v)}'`;
  }
  return out + '>';
}

export function domainOf(to: string | undefined): string {
  if (!to) return '';
  const at = to.indexOf('@');
  const rest = at >= 0 ? to.slice(at + 1) : to;
  const slash = rest.indexOf('/');
  return (slash >= 0 ? rest.slice(0, slash) : rest).toLowerCase().replace(/\.$/, '');
}

export class FramedTransport extends Duplex implements ClientStream {
  readonly remoteAddress: string | undefined;
  private readonly sink: FrameSink;
  private readonly allowHost: (domain: string) => boolean;
  private idleMs = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  /** The stream was refused here (host without this transport): later input is ignored. */
  private refused = false;

  constructor(options: FramedTransportOptions) {
    // Strings in, strings out: C2SSession writes strings and its parser takes Buffers or strings.
    super({ decodeStrings: false, allowHalfOpen: true });
    this.remoteAddress = options.remoteAddress;
    this.sink = options.sink;
    this.allowHost = options.allowHost;
    // writableLength includes what the transport has not delivered yet, so that the session's
    // slow-reader limit (limits.c2s_send_queue) covers the WebSocket buffer and BOSH queue too.
    const own = Object.getOwnPropertyDescriptor(Duplex.prototype, 'writableLength')?.get;
    Object.defineProperty(this, 'writableLength', {
      get: () => (own ? (own.call(this) as number) : 0) + this.sink.buffered(),
    });
    this.on('pause', () => this.sink.pause?.());
    this.on('resume', () => this.sink.resume?.());
  }


  setTimeout(ms: number, onTimeout?: () => void): this {
    this.idleMs = ms;
    if (onTimeout) this.on('timeout', onTimeout);
    this.touch();
    return this;
  }

  private touch(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (this.idleMs > 0 && !this.destroyed) {
      this.idleTimer = setTimeout(() => this.emit('timeout'), this.idleMs);
      this.idleTimer.unref();
    }
  }

  /** Stream text from the client, given to the session as is (stanzas, SASL, BOSH payloads). */
  pushText(text: string): void {
    if (this.destroyed || this.refused || this.readableEnded) return;
    this.touch();
    this.push(text);
  }

  /**
   * A stream (re)start to `to`: refused here with host-unknown when this transport is not
   * enabled for that host; otherwise the session gets the equivalent header.
   */
  open(attrs: Record<string, string | undefined>, streamNs = NS_STREAM): void {
    if (this.destroyed || this.refused) return;
    const domain = domainOf(attrs.to);
    if (domain && streamNs === NS_STREAM && !this.allowHost(domain)) {
      // Answered like C2SSession answers an unknown host: a header, the error, the end.
      this.refused = true;
      this.sink.frame({ type: 'open', attrs: { from: escapeAttr(domain), id: 'refused', version: '1.0', 'xml:lang': 'en' } });
      this.sink.frame({
        type: 'element',
        xml: `<stream:error xmlns:stream='${NS_STREAM}'><host-unknown xmlns='${NS_STREAMS_ERRORS}'/></stream:error>`,
      });
      this.sink.frame({ type: 'close' });
      this.sink.end();
      this.destroy();
      return;
    }
    this.pushText(streamHeader(attrs, streamNs));
  }

  /** The client closed the stream: the session sees `</stream:stream>`. */
  closeStream(): void {
    this.pushText('</stream:stream>');
  }

  /**
   * One RFC 7395 WebSocket frame: `<open/>` and `<close/>` become the stream's start and end,
   * everything else goes to the session's parser unchanged (its limits apply).
   */
  receiveFrame(text: string): void {
    const trimmed = text.trim();
    if (/^<open[\s/>]/.test(trimmed) || /^<close[\s/>]/.test(trimmed)) {
      let el: Element | undefined;
      try {
        el = parse(trimmed) as Element;
      } catch {
        el = undefined;
      }
      if (el && el.name === 'open') {
        // A wrong framing namespace reaches the session as a wrong stream namespace, which it
        // refuses with invalid-namespace (RFC 6120 §4.9.3.10).
        const ns = el.attrs.xmlns === NS_FRAMING ? NS_STREAM : el.attrs.xmlns || 'urn:parley:missing-namespace';
        this.open(el.attrs as Record<string, string>, ns);
        return;
      }
      if (el && el.name === 'close' && el.attrs.xmlns === NS_FRAMING) {
        this.closeStream();
        return;
      }
    }
    this.pushText(text);
  }

  override _read(): void {
    // Data is pushed as frames arrive; pausing is forwarded to the transport instead.
  }

  override _write(chunk: unknown, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.out(typeof chunk === 'string' ? chunk : String(chunk));
    cb();
  }

  override _writev(chunks: Array<{ chunk: unknown }>, cb: (err?: Error | null) => void): void {
    // Each write was one element: several chunks are several frames, never one joined frame.
    for (const { chunk } of chunks) this.out(typeof chunk === 'string' ? chunk : String(chunk));
    cb();
  }

  private out(text: string): void {
    if (this.refused) return;
    this.touch();
    if (text.startsWith('<?xml') || text.startsWith('<stream:stream')) {
      this.sink.frame({ type: 'open', attrs: headerAttrs(text) });
    } else if (text === '</stream:stream>') {
      this.sink.frame({ type: 'close' });
    } else {
      this.sink.frame({ type: 'element', xml: selfContained(text) });
    }
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.sink.end();
    cb();
    // The session only ends its side; with nothing more to say the stream is over.
    this.destroy();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    this.sink.destroy();
    cb(err);
  }
}

// ---------- what the WebSocket and BOSH plugins share ----------

export type SecureMode = 'tls' | 'loopback' | 'always';

/**
 * Whether a client stream counts as encrypted. STARTTLS cannot run inside WebSocket or BOSH, so
 * the connection itself must be TLS (wss/https), or come from a TLS-terminating proxy: one on the
 * same machine ('loopback') or anywhere ('always', for a proxy on a private network).
 */
export function connectionSecure(req: IncomingMessage, mode: SecureMode): boolean {
  if ((req.socket as Partial<TLSSocket>).encrypted) return true;
  if (mode === 'always') return true;
  if (mode === 'loopback') return isLoopback(req.socket.remoteAddress);
  return false;
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  if (a === '::1') return true;
  return isIP(a) === 4 && a.startsWith('127.');
}

/** An Origin is accepted when no list is configured, or it is on the list ('*' = any). */
export function originAllowed(origin: string | undefined, allowed: readonly string[]): boolean {
  if (allowed.length === 0 || allowed.includes('*')) return true;
  // Non-browser clients send no Origin; the check is against other web sites' pages.
  if (origin === undefined) return true;
  return allowed.includes(origin.toLowerCase().replace(/\/$/, ''));
}

/**
 * One registration per server of a plugin loaded per host: the first instance mounts, every
 * instance registers its host, and when the mounting one unloads another takes the mount over.
 */
export class HostRegistry<R> {
  private readonly registered = new Map<string, R>();
  private readonly mounters = new Map<string, () => void>();
  private mountedBy: string | undefined;

  has(host: string): boolean {
    return this.registered.has(host);
  }

  get(host: string): R | undefined {
    return this.registered.get(host);
  }

  /** Registers a host; `mount` runs now if nothing is mounted, or later on a takeover. */
  add(host: string, registration: R, mount: () => void, onClose: (fn: () => void) => void): void {
    // Registered before the mount, so this runs after the mount's own undo (undo runs in reverse).
    onClose(() => {
      if (this.registered.get(host) === registration) this.registered.delete(host);
      this.mounters.delete(host);
      if (this.mountedBy !== host) return;
      this.mountedBy = undefined;
      const next = this.mounters.entries().next().value;
      if (next) {
        this.mountedBy = next[0];
        next[1]();
      }
    });
    this.registered.set(host, registration);
    this.mounters.set(host, mount);
    if (this.mountedBy === undefined) {
      this.mountedBy = host;
      mount();
    }
  }
}

/** A per-server singleton keyed by the server object (each test server has its own router). */
export function perServer<T>(map: WeakMap<object, T>, server: object, create: () => T): T {
  let value = map.get(server);
  if (!value) {
    value = create();
    map.set(server, value);
  }
  return value;
}
