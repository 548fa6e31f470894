// One external component's stream (XEP-0114, jabber:component:accept):
//   component: <stream:stream xmlns='jabber:component:accept' to='gw.example.com'>
//   server:    <stream:stream ... id='<fresh random>' from='gw.example.com'>
//   component: <handshake>hex(SHA-1(id + secret))</handshake>
//   server:    <handshake/>            (or a not-authorized stream error, and the stream closes)
// then stanzas both ways. The component may send from its own domain only, and every stanza names
// its recipient: the server has no account to fill in as c2s does.
//
// Stanzas are processed one at a time and the socket is paused while one waits (routing I/O or
// the component's stanza rate), so a fast component cannot make the server buffer without bound.
import type { Duplex } from 'node:stream';
import { Element } from 'ltx';
import { StanzaError, StreamError } from '../errors.js';
import { Jid } from '../jid.js';
import type { Logger } from '../log.js';
import { NS_CLIENT, NS_COMPONENT, NS_SERVER, NS_STREAM } from '../xml/ns.js';
import { escapeAttr, serialize } from '../xml/serialize.js';
import { errorReply, isError, stanzaKind } from '../xml/stanza.js';
import { StreamParser, type StreamHeader, type XmlLimits } from '../xml/stream-parser.js';
import type { ComponentConfig } from './config.js';
import { newStreamId, verifyHandshake } from './handshake.js';
import { StanzaRate } from './rate.js';

/** What a component stream needs from the service that owns it. */
export interface ComponentSessionDeps {
  log: Logger;
  /** The component configured for a domain; read at each step, so a reload counts at once. */
  lookup(domain: string): ComponentConfig | undefined;
  /** Makes this stream the domain's; false when another stream already has it. */
  claim(domain: string, session: ComponentSession): boolean;
  /** The stream ended: the domain is free again (only if this stream held it). */
  release(domain: string, session: ComponentSession): void;
  /** Routes a stanza the component sent. */
  route(stanza: Element): Promise<void>;
}

export interface ComponentSessionOptions {
  xmlLimits: XmlLimits;
  handshakeTimeoutMs: number;
  /** Silence after which the component is pinged, and then closed if still silent; 0 = never. */
  pingIntervalMs: number;
  /** Outgoing bytes buffered before the component is dropped as too slow. */
  sendQueueBytes: number;
  /** `from` of the answer to a header that names no usable domain. */
  fallbackDomain: string;
}

/** The transport: a TCP socket, or a TLS socket on a Direct TLS listener. */
export type ComponentSocket = Duplex & { readonly remoteAddress?: string | undefined };

type State = 'header' | 'handshake' | 'ready' | 'closed';

export class ComponentSession {
  /** The domain named in the stream header (final once the handshake succeeds). */
  domain = '';
  private state: State = 'header';
  private readonly streamId = newStreamId();
  private readonly parser: StreamParser;
  private headerSent = false;
  private claimed = false;
  private readonly queue: Element[] = [];
  private processing = false;
  private rate = new StanzaRate(0);
  private rateTimer: NodeJS.Timeout | undefined;
  private readonly handshakeTimer: NodeJS.Timeout;
  private livenessTimer: NodeJS.Timeout | undefined;
  /** Whether any byte arrived since the last liveness check, and whether a ping is unanswered. */
  private heard = true;
  private pinged = false;
  private readonly log: Logger;

  constructor(
    private readonly socket: ComponentSocket,
    private readonly deps: ComponentSessionDeps,
    private readonly options: ComponentSessionOptions,
  ) {
    this.log = deps.log.child({ component: 'component', remote: socket.remoteAddress });
    this.parser = new StreamParser({
      streamStart: (h) => this.onStreamStart(h),
      stanza: (el) => this.enqueue(el),
      streamEnd: () => this.close(),
      error: (err) => this.close(err),
    }, options.xmlLimits);
    socket.on('data', (chunk: Buffer) => {
      this.heard = true;
      this.parser.write(chunk);
    });
    socket.on('error', (err: Error) => this.log.debug('socket error', { err: err.message }));
    socket.on('close', () => this.cleanup());
    this.handshakeTimer = setTimeout(() => {
      if (this.state !== 'ready') this.close(new StreamError('connection-timeout', 'no successful handshake in time'));
    }, options.handshakeTimeoutMs);
    this.handshakeTimer.unref();
  }

  /** Writes a stanza routed to the component's domain. */
  send(stanza: Element): void {
    if (this.state !== 'ready') throw new StanzaError('service-unavailable', 'the component is not connected');
    this.write(serializeForComponent(stanza));
    if (this.socket.writableLength > this.options.sendQueueBytes) {
      // Writing a stream error behind a full buffer would not reach it either.
      this.log.warn('component too slow, disconnecting', { domain: this.domain, queued: this.socket.writableLength });
      this.socket.destroy();
      this.cleanup();
    }
  }

  close(error?: StreamError): void {
    if (this.state === 'closed') return;
    if (error) {
      this.log.info('stream error', { domain: this.domain || undefined, condition: error.condition, text: error.text });
      if (!this.headerSent) this.sendHeader(this.options.fallbackDomain);
      this.write(serialize(error.toElement()));
    }
    if (this.headerSent) this.write('</stream:stream>');
    this.state = 'closed';
    const socket = this.socket;
    socket.end();
    // A peer that never closes its side must not hold the socket forever.
    setTimeout(() => socket.destroy(), 2000).unref();
    this.cleanup();
  }

  private write(data: string): void {
    if (this.state === 'closed' || this.socket.destroyed) return;
    this.socket.write(data);
  }

  private sendHeader(from: string): void {
    this.write(`<?xml version='1.0'?><stream:stream xmlns:stream='${NS_STREAM}' xmlns='${NS_COMPONENT}' `
      + `id='${this.streamId}' from='${escapeAttr(from)}'>`);
    this.headerSent = true;
  }

  private onStreamStart(h: StreamHeader): void {
    const to = Jid.tryParse(h.attrs.to);
    const domain = to?.isDomain ? to.domain : '';
    // Answered before any error, so the component can read the error (RFC 6120 §4.9.1.2).
    this.sendHeader(domain || this.options.fallbackDomain);
    if (h.ns !== NS_STREAM || h.name.split(':').pop() !== 'stream') {
      return this.close(new StreamError('invalid-namespace', 'the root must be stream in the streams namespace'));
    }
    if (h.contentNs !== NS_COMPONENT) {
      return this.close(new StreamError('invalid-namespace', `content namespace must be ${NS_COMPONENT}`));
    }
    if (!domain || !this.deps.lookup(domain)) {
      return this.close(new StreamError('host-unknown', 'no component is configured for that domain'));
    }
    this.domain = domain;
    this.state = 'handshake';
  }

  // ---------- serial processing ----------

  private enqueue(el: Element): void {
    if (this.state === 'closed') return;
    this.queue.push(el);
    if (this.processing) {
      this.socket.pause();
      return;
    }
    void this.drain();
  }

  private async drain(): Promise<void> {
    this.processing = true;
    while (this.queue.length > 0 && this.state !== 'closed') {
      const wait = this.rate.take();
      if (wait > 0) {
        this.socket.pause();
        await new Promise<void>((resolve) => {
          this.rateTimer = setTimeout(resolve, wait);
        });
        continue;
      }
      try {
        await this.handle(this.queue.shift()!);
      } catch (err) {
        if (err instanceof StreamError) this.close(err);
        else {
          this.log.error('component stanza handling failed', { err, domain: this.domain });
          this.close(new StreamError('internal-server-error'));
        }
      }
    }
    this.processing = false;
    if (this.state !== 'closed' && this.socket.isPaused()) this.socket.resume();
  }

  private async handle(el: Element): Promise<void> {
    if (this.state === 'header') throw new StreamError('not-well-formed', 'stream header expected');
    if (this.state === 'handshake') return this.handshake(el);
    if (this.state !== 'ready') return;
    const kind = stanzaKind(el);
    const ns = el.attrs.xmlns;
    if (!kind || (ns !== undefined && ns !== NS_CLIENT)) {
      throw new StreamError('unsupported-stanza-type', `unexpected element ${el.name}`);
    }
    // Some components write jabber:client explicitly; it means the same stanza.
    if (ns !== undefined) delete el.attrs.xmlns;
    const from = Jid.tryParse(el.attrs.from);
    if (!from || from.domain !== this.domain) {
      throw new StreamError('invalid-from', `stanzas must come from ${this.domain} or a JID at it`);
    }
    if (el.attrs.to === undefined) {
      // RFC 6120 §4.9.3.7: the condition for a stanza between servers without an address; there
      // is no account here whose address could stand in for it, as on a client stream.
      throw new StreamError('improper-addressing', "every stanza needs a 'to' address");
    }
    const to = Jid.tryParse(el.attrs.to);
    if (!to) {
      if (!isError(el)) this.write(serialize(errorReply(el, new StanzaError('jid-malformed', "the 'to' address is not a valid JID"))));
      return;
    }
    // Canonical addresses, as c2s stanzas carry them, so recipients can compare them as strings.
    el.attrs.from = from.full;
    el.attrs.to = to.full;
    await this.deps.route(el);
  }

  private handshake(el: Element): void {
    if (el.name !== 'handshake' || (el.attrs.xmlns ?? NS_COMPONENT) !== NS_COMPONENT) {
      throw new StreamError('not-authorized', 'send the handshake first');
    }
    const config = this.deps.lookup(this.domain);
    if (!config || !verifyHandshake(el.text(), this.streamId, config.secret)) {
      throw new StreamError('not-authorized', 'wrong handshake');
    }
    // Only an authenticated component learns whether its domain is taken.
    if (!this.deps.claim(this.domain, this)) {
      throw new StreamError('conflict', 'this component is already connected');
    }
    this.claimed = true;
    this.state = 'ready';
    clearTimeout(this.handshakeTimer);
    this.rate = new StanzaRate(config.stanza_rate);
    this.write('<handshake/>');
    this.log.info('component connected', { domain: this.domain });
    this.watchLiveness();
  }

  /**
   * Every interval: a component heard from is fine; one silent for a whole interval is pinged;
   * one still silent an interval after the ping is gone (any byte counts as an answer, even an
   * error reply from a component that does not implement ping).
   */
  private watchLiveness(): void {
    const interval = this.options.pingIntervalMs;
    if (interval <= 0) return;
    this.livenessTimer = setInterval(() => {
      if (this.heard) {
        this.heard = false;
        this.pinged = false;
        return;
      }
      if (this.pinged) {
        this.close(new StreamError('connection-timeout', 'no answer to a ping'));
        return;
      }
      this.pinged = true;
      this.write(`<iq type='get' id='liveness-${Date.now().toString(36)}' from='${escapeAttr(this.options.fallbackDomain)}' `
        + `to='${escapeAttr(this.domain)}'><ping xmlns='urn:xmpp:ping'/></iq>`);
    }, interval);
    this.livenessTimer.unref();
  }

  private cleanupDone = false;
  private cleanup(): void {
    if (this.cleanupDone) return;
    this.cleanupDone = true;
    this.state = 'closed';
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.rateTimer);
    clearInterval(this.livenessTimer);
    this.queue.length = 0;
    if (this.claimed) {
      this.deps.release(this.domain, this);
      this.log.info('component disconnected', { domain: this.domain });
    }
  }
}

/**
 * Stanzas from client streams may carry jabber:client explicitly; on this stream the default
 * namespace is jabber:component:accept, which is what the component expects them in.
 */
function serializeForComponent(stanza: Element): string {
  const ns = stanza.attrs.xmlns;
  if (ns !== NS_CLIENT && ns !== NS_SERVER) return serialize(stanza);
  const { xmlns: _ns, ...attrs } = stanza.attrs as Record<string, string>;
  // A shallow copy: the stanza may be shared with other recipients, and serialize only reads.
  const copy = new Element(stanza.name, attrs);
  copy.children = stanza.children;
  return serialize(copy);
}
