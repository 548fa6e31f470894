// A client-to-server stream (RFC 6120): STARTTLS, SASL, resource binding, then stanzas.
// The session processes its stanzas one at a time; while a handler waits for I/O the socket is
// paused, so a fast sender cannot make the server buffer without bound (backpressure).
//
// Stream management (XEP-0198) lives here because it is about every stanza written: send() counts
// and queues each one (whoever writes it: the router, a CSI flush, a carbon), the drain loop
// counts each stanza handled, and `<r/>`/`<a/>` are answered here. The smacks plugin decides the
// policy (`<enable/>`, `<resume/>`, limits) and calls enableStreamManagement() and resume().
// A resumable session whose connection is lost *hibernates*: it stays registered and available,
// stanzas for it are queued, and a new stream may take it over (resume) until the window ends.
// Then, or when a stream ends for good, what the client never acknowledged is handed back: to
// the delivery callback given with the stanza, or else to the `delivery/failure` hook.
//
// Events emitted here besides the routing ones: `session/hibernated`, `session/hibernated-stanza`
// (a stanza queued while hibernating, e.g. for push), `session/resumed`, `delivery/failure` (run,
// per unacknowledged stanza without a callback) and `session/closed` (always, once, at the very
// end, also for sessions that never bound or were replaced).
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError, StreamError } from '../errors.js';
import { Jid, JidError, prepLocal, prepResource } from '../jid.js';
import type { Logger } from '../log.js';
import type { CertStore } from '../net/certs.js';
import type { HostContext } from '../plugin/host.js';
import type { StanzaEvent } from '../plugin/types.js';
import type { Router } from '../router.js';
import { createSaslSession, type ChannelBinding, type SaslRefusal, type SaslResult, type SaslSession } from '../sasl/index.js';
import { tlsChannelBinding, type ChannelBindingType } from '../sasl/channel-binding.js';
import { describeWait, type AuthThrottle, type Refusal, type ThrottleSettings } from '../auth/throttle.js';
import type { Accounts } from '../accounts.js';
import { StreamParser, type StreamHeader, type XmlLimits } from '../xml/stream-parser.js';
import { NS_BIND, NS_CLIENT, NS_DELAY, NS_SASL, NS_SESSION, NS_STREAM, NS_TLS } from '../xml/ns.js';
import { cloneStanza, errorReply, iqResult, stanzaKind } from '../xml/stanza.js';
import { serialize } from '../xml/serialize.js';
import type { SessionRegistry } from './registry.js';
import { NS_SM, StreamManagementState, parseCount, type UnackedStanza } from './smacks.js';
import type {
  ClientSession, DeliveryCallback, DeliveryFailureEvent, SessionStats, StreamManagementConfig, StreamManagementInfo,
} from './types.js';

/** XEP-0440: the channel binding types offered, as a stream feature. */
const NS_SASL_CB = 'urn:xmpp:sasl-cb:0';

export interface C2SOptions {
  /** The listener accepted TLS directly (XEP-0368); no STARTTLS then. */
  directTls: boolean;
  starttlsRequired: boolean;
  mechanisms: readonly string[];
  xmlLimits: XmlLimits;
  /** Time from connect to a bound resource. */
  handshakeTimeoutMs: number;
  /** Close a session silent this long (0 = never). */
  idleTimeoutMs: number;
  /** Outgoing bytes buffered before the client is considered too slow and closed. */
  sendQueueBytes: number;
  /** SASL failures allowed on one stream before it is closed. */
  maxAuthFailures: number;
  /** Channel binding types for the -PLUS mechanisms, in order of preference (XEP-0440). */
  channelBinding: readonly ChannelBindingType[];
  /** Limits on failed logins; the counters are in C2SDeps.authThrottle, shared by all streams. */
  throttle: ThrottleSettings;
  /** Wait before answering a failed or refused login. */
  failureDelayMs: number;
}

export interface C2SDeps {
  log: Logger;
  sessions: SessionRegistry;
  router: Router;
  accounts: Accounts;
  certs: CertStore;
  saslSecret: Buffer;
  /** Failed-login counters of the whole server. */
  authThrottle: AuthThrottle;
  /** Configured hosts served to clients (not service domains). */
  hostFor(domain: string): HostContext | undefined;
}

type State = 'header' | 'features' | 'bound' | 'hibernated' | 'closed';

/** Where the parser's events go; a resumed session takes over another stream's parser. */
interface ParserSink {
  session: C2SSession;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

let sessionCounter = 0;

export class C2SSession implements ClientSession {
  readonly id: string;
  jid: Jid | undefined;
  host = '';
  secure: boolean;
  readonly log: Logger;
  available = false;
  priority = 0;
  presence: Element | undefined;
  readonly data = new Map<string, unknown>();

  private socket: Socket;
  private parser: StreamParser;
  private sink: ParserSink;
  /** The listeners attach() put on the socket, so that exactly those can be taken off again. */
  private socketListeners: { data: (chunk: Buffer) => void; error: (err: Error) => void; close: () => void } | undefined;
  private state: State = 'header';
  private headerSent = false;
  private hostCtx: HostContext | undefined;
  private user: string | undefined;
  private sasl: SaslSession | undefined;
  private mechanism = '';
  private authFailures = 0;
  /** Decided once per TLS stream, when the first features are sent; undefined = no -PLUS. */
  private binding: ChannelBinding | undefined;
  private bindingDecided = false;
  /** Set by the SASL callbacks: the current failure was a guess or a refusal, and is delayed. */
  private penalized = false;
  /** The client's address, for throttling; taken from the TCP socket before any TLS wrapping. */
  remoteAddress: string | undefined;
  private readonly queue: Element[] = [];
  private processing = false;
  /** Resolved when the drain loop stops (resume waits for the old stream's last stanza). */
  private idleWaiters: Array<() => void> = [];
  /** Where the message being handled collects its pending commits (StanzaEvent.durable). */
  private commits: Array<Promise<void>> | undefined;
  /** Handled stanzas whose commits are pending, counted in order as they land (see settle()). */
  private settling: Promise<void> = Promise.resolve();
  private unsettled = 0;
  private commitFailed = false;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private sentInitialPresence = false;
  private readonly connectedAt = Date.now();
  private stanzasIn = 0;
  private stanzasOut = 0;

  // Stream management (XEP-0198).
  private sm: StreamManagementState | undefined;
  private smConfig: StreamManagementConfig | undefined;
  /** An `<r/>` was sent and its `<a/>` has not come yet; one request is outstanding at a time. */
  private awaitingAck = false;
  private requestTimer: NodeJS.Timeout | undefined;
  private ackTimer: NodeJS.Timeout | undefined;
  private hibernateTimer: NodeJS.Timeout | undefined;
  /** Callbacks of stanzas an outgoing filter took (e.g. CSI holding them) until they are sent. */
  private readonly heldOutcomes = new Map<Element, DeliveryCallback>();

  constructor(socket: Socket, private readonly deps: C2SDeps, private readonly options: C2SOptions) {
    this.id = `c2s-${(++sessionCounter).toString(36)}-${randomBytes(3).toString('hex')}`;
    this.log = deps.log.child({ session: this.id });
    this.socket = socket;
    this.secure = options.directTls;
    this.remoteAddress = socket.remoteAddress ?? (socket as Socket & { _parent?: Socket })._parent?.remoteAddress;
    const sink: ParserSink = { session: this };
    this.sink = sink;
    this.parser = new StreamParser({
      streamStart: (h) => sink.session.onStreamStart(h),
      stanza: (el) => sink.session.enqueue(el),
      streamEnd: () => sink.session.close(),
      error: (err) => sink.session.close(err),
    }, options.xmlLimits);
    this.attach(socket);
    this.handshakeTimer = setTimeout(() => {
      if (this.state !== 'bound' && this.state !== 'closed') {
        this.close(new StreamError('connection-timeout', 'stream negotiation took too long'));
      }
    }, options.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    this.log.debug('connected', { remote: socket.remoteAddress });
  }

  get account(): string | undefined {
    return this.user === undefined ? undefined : `${this.user}@${this.host}`;
  }

  get hibernating(): boolean {
    return this.state === 'hibernated';
  }

  get streamManagement(): StreamManagementInfo | undefined {
    const sm = this.sm;
    const config = this.smConfig;
    if (!sm || !config) return undefined;
    return {
      id: config.id, resumeTimeoutMs: config.resumeTimeoutMs, handled: sm.handled, unacked: sm.unacked, maxUnacked: config.maxUnacked,
    };
  }

  // ---------- socket plumbing ----------

  private attach(socket: Socket): void {
    const listeners = {
      data: (chunk: Buffer) => this.parser.write(chunk),
      error: (err: Error) => this.log.debug('socket error', { err: err.message }),
      close: () => this.onSocketClose(socket),
    };
    this.socketListeners = listeners;
    socket.on('data', listeners.data);
    socket.on('error', listeners.error);
    socket.on('close', listeners.close);
    if (this.options.idleTimeoutMs > 0) {
      socket.setTimeout(this.options.idleTimeoutMs, () => {
        if (this.socket === socket) this.connectionLost(new StreamError('connection-timeout'));
      });
    }
  }

  /** Takes this session's listeners off its socket (STARTTLS, or a resumed session moving on). */
  private detach(socket: Socket): void {
    const listeners = this.socketListeners;
    if (listeners) {
      socket.off('data', listeners.data);
      socket.off('error', listeners.error);
      socket.off('close', listeners.close);
    }
    this.socketListeners = undefined;
    socket.setTimeout(0);
    socket.removeAllListeners('timeout');
  }

  private onSocketClose(socket: Socket): void {
    // A socket this session has already left (resumed elsewhere), or already gave up on
    // (hibernating since), does not concern it.
    if (socket !== this.socket || this.state === 'hibernated') return;
    if (this.resumable()) this.hibernate();
    else this.cleanup();
  }

  private resumable(): boolean {
    return this.state === 'bound' && this.sm !== undefined && (this.smConfig?.resumeTimeoutMs ?? 0) > 0;
  }

  /**
   * The connection is taken for dead (silent too long, an `<r/>` unanswered, too slow to read):
   * a resumable session drops the socket and hibernates, any other is closed.
   */
  private connectionLost(error: StreamError): void {
    if (this.resumable()) {
      this.log.info('connection lost, waiting for resumption', { reason: error.text ?? error.condition });
      this.socket.destroy();
      this.hibernate();
      return;
    }
    this.close(error);
  }

  private write(data: string): void {
    if (this.state === 'closed' || this.state === 'hibernated' || this.socket.destroyed) return;
    this.socket.write(data);
    if (this.socket.writableLength > this.options.sendQueueBytes) {
      this.log.warn('client too slow, closing', { queued: this.socket.writableLength });
      if (this.resumable()) {
        this.socket.destroy();
        this.hibernate();
      } else {
        this.state = 'closed';
        this.socket.destroy();
        this.cleanup();
      }
    }
  }

  deliver(stanza: Element, onOutcome?: DeliveryCallback): void {
    const filters = this.hostCtx?.outgoingFilters.values();
    if (filters && this.state !== 'closed') {
      for (const filter of filters) {
        try {
          if (filter(this, stanza)) {
            // Held (or dropped) by a filter: the callback waits for the stanza to come through
            // send(); one that never does is told 'failed' when the session ends.
            if (onOutcome) this.heldOutcomes.set(stanza, onOutcome);
            return;
          }
        } catch (err) {
          this.log.error('outgoing filter failed', { err });
        }
      }
    }
    this.send(stanza, onOutcome);
  }

  send(stanza: Element, onOutcome?: DeliveryCallback): void {
    let callback = onOutcome;
    if (!callback && this.heldOutcomes.size > 0) {
      callback = this.heldOutcomes.get(stanza);
      if (callback) this.heldOutcomes.delete(stanza);
    }
    if (this.state === 'closed') {
      if (callback) queueMicrotask(() => tell(callback, 'failed', this.log));
      return;
    }
    this.stanzasOut++;
    const sm = this.sm;
    if (!sm) {
      this.write(serialize(stanza));
      if (callback) tell(callback, 'written', this.log);
      return;
    }
    const unacked = sm.push({ stanza, sentAt: Date.now(), onOutcome: callback });
    if (unacked > this.smConfig!.maxUnacked) {
      // The client does not acknowledge what it gets: holding more would grow without bound.
      this.log.warn('too many unacknowledged stanzas', { unacked });
      this.close(new StreamError('resource-constraint', 'too many unacknowledged stanzas'));
      return;
    }
    if (this.state === 'hibernated') {
      const host = this.hostCtx;
      if (host) {
        void host.hooks.emit('session/hibernated-stanza', { session: this, stanza })
          .catch((err: unknown) => this.log.error('hibernated-stanza hooks failed', { err }));
      }
      return;
    }
    this.write(serialize(stanza));
    this.afterCountedSend();
  }

  stats(): SessionStats {
    return {
      connectedAt: this.connectedAt,
      stanzasIn: this.stanzasIn,
      stanzasOut: this.stanzasOut,
      queued: this.queue.length,
      sendBuffer: this.socket.writableLength,
      unacked: this.sm?.unacked ?? 0,
    };
  }

  sendElement(el: Element): void {
    this.write(serialize(el));
  }

  // ---------- stream management (XEP-0198) ----------

  enableStreamManagement(config: StreamManagementConfig): void {
    if (this.sm) throw new Error('stream management is already enabled');
    this.sm = new StreamManagementState();
    this.smConfig = { ...config };
  }

  /** After each counted stanza written: ask for an ack by count, or arm the delayed request. */
  private afterCountedSend(): void {
    const sm = this.sm!;
    const config = this.smConfig!;
    sm.sinceRequest++;
    if (this.awaitingAck) return;
    if (sm.sinceRequest >= config.requestEvery) {
      this.requestAck();
    } else if (!this.requestTimer && config.requestDelayMs > 0) {
      this.requestTimer = setTimeout(() => {
        this.requestTimer = undefined;
        this.requestAck();
      }, config.requestDelayMs);
      this.requestTimer.unref();
    }
  }

  private requestAck(): void {
    clearTimeout(this.requestTimer);
    this.requestTimer = undefined;
    const sm = this.sm;
    if (!sm || this.state !== 'bound' || sm.unacked === 0 || this.awaitingAck) return;
    this.awaitingAck = true;
    sm.sinceRequest = 0;
    this.write(`<r xmlns='${NS_SM}'/>`);
    const timeout = this.smConfig!.ackTimeoutMs;
    if (timeout > 0) {
      this.ackTimer = setTimeout(() => {
        this.ackTimer = undefined;
        this.connectionLost(new StreamError('connection-timeout', 'no acknowledgement from the client'));
      }, timeout);
      this.ackTimer.unref();
    }
  }

  private stopSmTimers(): void {
    clearTimeout(this.requestTimer);
    clearTimeout(this.ackTimer);
    this.requestTimer = undefined;
    this.ackTimer = undefined;
    this.awaitingAck = false;
  }

  /** `<r/>` and `<a/>` of an enabled session. */
  private handleSmElement(el: Element): void | Promise<void> {
    const sm = this.sm!;
    if (el.name === 'r') {
      const answer = () => {
        if (!this.commitFailed) this.write(`<a xmlns='${NS_SM}' h='${sm.handled}'/>`);
      };
      // The answer covers what came before it, so it waits for their commits.
      if (this.unsettled > 0) return this.settling.then(answer);
      answer();
      return;
    }
    if (el.name !== 'a') throw new StreamError('unsupported-stanza-type', `unexpected stream management element ${el.name}`);
    const h = parseCount(el.attrs.h);
    if (h === undefined) throw new StreamError('bad-format', "<a/> needs an 'h' from 0 to 4294967295");
    this.applyAck(h);
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.awaitingAck = false;
    // What was sent while the request was out is covered by the next one.
    if (sm.sinceRequest >= this.smConfig!.requestEvery) this.requestAck();
    else if (sm.sinceRequest > 0 && sm.unacked > 0 && !this.requestTimer && this.smConfig!.requestDelayMs > 0) {
      this.requestTimer = setTimeout(() => {
        this.requestTimer = undefined;
        this.requestAck();
      }, this.smConfig!.requestDelayMs);
      this.requestTimer.unref();
    }
  }

  /** Removes what `h` covers from the queue and tells their callbacks; throws when `h` is too high. */
  private applyAck(h: number): void {
    for (const entry of this.sm!.ack(h)) {
      if (entry.onOutcome) tell(entry.onOutcome, 'acked', this.log);
    }
  }

  private hibernate(): void {
    if (this.state === 'hibernated' || this.state === 'closed') return;
    this.state = 'hibernated';
    this.stopSmTimers();
    const timeout = this.smConfig!.resumeTimeoutMs;
    this.log.info('hibernating', { jid: this.jid?.full, unacked: this.sm!.unacked, timeoutMs: timeout });
    this.hibernateTimer = setTimeout(() => {
      this.hibernateTimer = undefined;
      if (this.state !== 'hibernated') return;
      this.log.info('resumption window ended', { jid: this.jid?.full });
      this.cleanup();
    }, timeout);
    this.hibernateTimer.unref();
    void this.hostCtx?.hooks.emit('session/hibernated', { session: this })
      .catch((err: unknown) => this.log.error('hibernated hooks failed', { err }));
  }

  /** Resolves once no stanza of this session is being processed. */
  private whenIdle(): Promise<void> {
    if (!this.processing) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async resume(from: ClientSession, h: number): Promise<boolean> {
    if (!(from instanceof C2SSession) || from === this || from.state === 'closed') return false;
    if (!this.sm || (this.state !== 'bound' && this.state !== 'hibernated')) return false;
    // Stop reading the old connection (the server may not have noticed it is gone), then let the
    // stanza being processed finish, so that `h` counts exactly what was handled.
    if (this.state === 'bound') {
      const old = this.socket;
      this.detach(old);
      old.destroy();
      this.state = 'hibernated';
      this.stopSmTimers();
    }
    clearTimeout(this.hibernateTimer);
    this.hibernateTimer = undefined;
    await this.whenIdle();
    // `h` in <resumed/> must count every handled stanza whose commit was still pending.
    await this.settling;
    // Either side may have ended while the last stanza was processed (kicked, replaced, the
    // new connection dropped); a session still waiting then gets its window back.
    const now = this.state as State;
    if (now !== 'hibernated' || (from.state as State) === 'closed') {
      if (now === 'hibernated') this.hibernateAgain();
      return false;
    }
    this.adopt(from);
    this.state = 'bound';
    this.log.info('resumed', { jid: this.jid?.full, h });
    try {
      this.applyAck(h);
    } catch (err) {
      if (err instanceof StreamError) {
        this.close(err);
        return true;
      }
      throw err;
    }
    this.write(`<resumed xmlns='${NS_SM}' h='${this.sm.handled}' previd='${xmlEscape(this.smConfig!.id ?? '')}'/>`);
    // Everything not acknowledged goes out again, marked with when it was first sent.
    const pending = this.sm.pending();
    for (const entry of pending) this.write(serialize(resent(entry, this.host)));
    if (pending.length > 0) this.requestAck();
    await this.hostCtx!.hooks.emit('session/resumed', { session: this });
    this.kick();
    return true;
  }

  /** Restarts the resumption window after a resume attempt that did not go through. */
  private hibernateAgain(): void {
    this.state = 'bound';
    this.hibernate();
  }

  /** Takes over the connection and parser of another session's stream (resumption). */
  private adopt(other: C2SSession): void {
    const socket = other.socket;
    other.detach(socket);
    clearTimeout(other.handshakeTimer);
    // From here the other session owns nothing: it never bound, so it leaves no trace.
    other.state = 'closed';
    other.cleanupDone = true;
    other.sink.session = this;
    this.sink = other.sink;
    this.parser = other.parser;
    this.socket = socket;
    this.secure = other.secure;
    this.remoteAddress = other.remoteAddress;
    this.headerSent = true;
    // Stanzas the client pipelined behind <resume/> are this session's now, in order.
    this.queue.push(...other.queue.splice(0));
    this.attach(socket);
  }

  /** Starts processing queued stanzas, or lets the socket flow again when there are none. */
  private kick(): void {
    if (this.processing) return;
    if (this.queue.length > 0) void this.drain();
    else if (this.state === 'bound' && this.socket.isPaused()) this.socket.resume();
  }

  // ---------- stream lifecycle ----------

  private sendHeader(to: string | undefined, from: string): void {
    const attrs = [
      `xmlns='${NS_CLIENT}'`, `xmlns:stream='${NS_STREAM}'`,
      `id='${randomBytes(12).toString('hex')}'`, `from='${xmlEscape(from)}'`, `version='1.0'`, `xml:lang='en'`,
    ];
    if (to) attrs.push(`to='${xmlEscape(to)}'`);
    this.write(`<?xml version='1.0'?><stream:stream ${attrs.join(' ')}>`);
    this.headerSent = true;
  }

  private onStreamStart(h: StreamHeader): void {
    const requested = h.attrs.to ?? '';
    let domain = requested;
    try {
      domain = requested ? Jid.parse(requested).domain : '';
    } catch {
      domain = '';
    }
    const host = domain ? this.deps.hostFor(domain) : undefined;
    // The header is answered before any error so the client can read the error (RFC 6120 §4.9.1.2).
    const fromJid = Jid.tryParse(h.attrs.from);
    this.sendHeader(fromJid?.full, host?.name ?? (domain || 'localhost'));
    if (h.ns !== NS_STREAM || h.name.split(':').pop() !== 'stream') {
      return this.close(new StreamError('invalid-namespace', 'the root must be stream in the streams namespace'));
    }
    if (h.contentNs !== NS_CLIENT) {
      return this.close(new StreamError('invalid-namespace', `content namespace must be ${NS_CLIENT}`));
    }
    if (!h.attrs.version || parseInt(h.attrs.version, 10) < 1) {
      return this.close(new StreamError('unsupported-version', 'version 1.0 is required'));
    }
    if (!host) return this.close(new StreamError('host-unknown', 'this server does not serve that domain'));
    if (this.hostCtx && this.hostCtx !== host) {
      return this.close(new StreamError('host-unknown', 'the domain may not change on a stream restart'));
    }
    this.hostCtx = host;
    this.host = host.name;
    this.state = 'features';
    void this.sendFeatures();
  }

  private async sendFeatures(): Promise<void> {
    const features = xml('stream:features');
    if (!this.secure) {
      const tls = xml('starttls', { xmlns: NS_TLS });
      if (this.options.starttlsRequired) tls.append(xml('required'));
      features.append(tls);
    }
    if (this.secure || !this.options.starttlsRequired) {
      if (!this.user) {
        const offered = this.offeredMechanisms();
        const mechs = xml('mechanisms', { xmlns: NS_SASL });
        for (const m of offered) mechs.append(xml('mechanism', {}, m));
        features.append(mechs);
        if (this.binding && offered.some((m) => m.endsWith('-PLUS'))) {
          const cb = xml('sasl-channel-binding', { xmlns: NS_SASL_CB });
          for (const type of this.binding.types ?? []) cb.append(xml('channel-binding', { type }));
          features.append(cb);
        }
        this.addProviderFeatures(features, 'pre-auth');
      } else {
        features.append(xml('bind', { xmlns: NS_BIND }));
        // RFC 3921 sessions are a no-op today; `optional` tells modern clients to skip them.
        features.append(xml('session', { xmlns: NS_SESSION }, xml('optional')));
        this.addProviderFeatures(features, 'post-auth');
      }
    }
    this.sendElement(features);
  }

  private addProviderFeatures(features: Element, stage: 'pre-auth' | 'post-auth'): void {
    for (const provider of this.hostCtx!.featureProviders.values()) {
      try {
        const out = provider(this, stage);
        if (out) for (const el of Array.isArray(out) ? out : [out]) features.append(el);
      } catch (err) {
        this.log.error('stream feature provider failed', { err });
      }
    }
  }

  private offeredMechanisms(): string[] {
    const binding = this.channelBinding();
    // PLAIN sends the password itself: never over an unencrypted stream. The -PLUS variants need
    // a channel to bind to; with no usable type they are left out, not offered and then refused.
    return this.options.mechanisms.filter((m) => (m === 'PLAIN' ? this.secure : m.endsWith('-PLUS') ? binding !== undefined : true));
  }

  /**
   * The stream's channel binding, decided once TLS is up. It depends on the listener's settings,
   * the TLS version and the certificate only, so the offer is the same on every login of the
   * same client (Conversations pins the mechanism it used and takes a change as an attack).
   */
  private channelBinding(): ChannelBinding | undefined {
    if (!this.bindingDecided && this.secure && this.socket instanceof TLSSocket) {
      this.bindingDecided = true;
      this.binding = tlsChannelBinding(this.socket, this.options.channelBinding);
    }
    return this.binding;
  }

  close(error?: StreamError): void {
    if (this.state === 'closed') return;
    const connected = this.state !== 'hibernated';
    if (error) {
      this.log.info('stream error', { condition: error.condition, text: error.text });
      if (connected) {
        if (!this.headerSent) this.sendHeader(undefined, this.host || 'localhost');
        this.sendElement(error.toElement());
      }
    }
    if (connected && this.headerSent) this.write('</stream:stream>');
    this.state = 'closed';
    if (connected) {
      const socket = this.socket;
      socket.end();
      // A client that never closes its side must not hold the socket forever.
      setTimeout(() => socket.destroy(), 2000).unref();
    }
    this.cleanup();
  }

  private cleanupDone = false;
  /**
   * The end of the session, once: it leaves the registry, what the client never acknowledged is
   * handed back (delivery callbacks, then `delivery/failure`), unavailable presence goes out and
   * the unbind and closed events run.
   */
  private cleanup(): void {
    if (this.cleanupDone) return;
    this.cleanupDone = true;
    this.state = 'closed';
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.hibernateTimer);
    this.hibernateTimer = undefined;
    this.stopSmTimers();
    this.queue.length = 0;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
    const unacked = this.sm ? this.sm.takeAll() : [];
    const held = [...this.heldOutcomes.values()];
    this.heldOutcomes.clear();
    const registered = this.jid !== undefined && this.deps.sessions.remove(this);
    const host = this.hostCtx;
    const wasAvailable = this.available;
    if (registered) this.available = false;
    if (host) {
      void (async () => {
        // Taken out of the registry first, so that what is handed back is not routed here again.
        await this.failUnacked(host, unacked);
        for (const callback of held) tell(callback, 'failed', this.log);
        if (registered) {
          if (wasAvailable) {
            const unavailable = xml('presence', { type: 'unavailable', from: this.jid!.full });
            this.presence = unavailable;
            await host.hooks.emit('presence/broadcast', { stanza: unavailable, from: this.jid!, to: this.jid!.toBare(), session: this });
          }
          await host.hooks.emit('resource-unbind', { session: this });
        }
        await host.hooks.emit('session/closed', { session: this });
      })().catch((err: unknown) => this.log.error('unbind hooks failed', { err }));
    }
    this.log.debug('closed');
  }

  /**
   * Unacknowledged stanzas of a session that ends: a stanza sent with a delivery callback goes
   * back to its sender through it; the others are offered to `delivery/failure` (the smacks
   * plugin sends messages to another resource or to offline storage, XEP-0198 §4).
   */
  private async failUnacked(host: HostContext, unacked: UnackedStanza[]): Promise<void> {
    if (unacked.length === 0) return;
    this.log.info('session ended with unacknowledged stanzas', { jid: this.jid?.full, unacked: unacked.length });
    for (const entry of unacked) {
      if (entry.onOutcome) {
        tell(entry.onOutcome, 'failed', this.log);
        continue;
      }
      const ev: DeliveryFailureEvent = { session: this, stanza: entry.stanza, sentAt: entry.sentAt };
      await host.hooks.run('delivery/failure', ev);
    }
  }

  // ---------- serial processing ----------

  private enqueue(el: Element): void {
    if (this.state === 'closed') return;
    this.stanzasIn++;
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
      const el = this.queue.shift()!;
      const kind = stanzaKind(el);
      const commits: Array<Promise<void>> = [];
      this.commits = kind === 'message' ? commits : undefined;
      try {
        await this.handle(el);
        // XEP-0198 §4: a stanza counts as handled once it has been processed (routed, answered
        // or refused) and what it stored is committed; `<r/>` is answered in stream order, so
        // its `h` covers everything before.
        this.settle(commits, kind !== undefined ? this.sm : undefined);
      } catch (err) {
        if (err instanceof StreamError) this.close(err);
        else {
          this.log.error('stanza handling failed', { err });
          this.close(new StreamError('internal-server-error'));
        }
      }
    }
    this.processing = false;
    for (const resolve of this.idleWaiters.splice(0)) resolve();
    if (this.state !== 'closed' && this.state !== 'hibernated' && this.socket.isPaused()) this.socket.resume();
  }

  /**
   * Counts a handled stanza once its commits have landed, after every stanza handled before it.
   * Without pending commits (the usual case for all but stored messages) it counts at once. A
   * failed commit means the message may not be stored: nothing from there on is counted and the
   * stream ends, so the client sends again what its `h` does not cover.
   */
  private settle(commits: Array<Promise<void>>, sm: StreamManagementState | undefined): void {
    if (commits.length === 0 && this.unsettled === 0) {
      sm?.countHandled();
      return;
    }
    this.unsettled++;
    const stored = Promise.all(commits);
    this.settling = this.settling.then(() => stored).then(() => {
      this.unsettled--;
      if (!this.commitFailed) sm?.countHandled();
    }, (err: unknown) => {
      this.unsettled--;
      if (this.commitFailed) return;
      this.commitFailed = true;
      this.log.error('a message could not be stored', { err });
      if (this.state !== 'closed') this.close(new StreamError('internal-server-error'));
    });
  }

  private async handle(el: Element): Promise<void> {
    if (this.state === 'header') throw new StreamError('not-well-formed', 'stream header expected');
    const ns = el.attrs.xmlns;
    if (ns === NS_TLS && el.name === 'starttls') return this.startTls();
    if (!this.secure && this.options.starttlsRequired) {
      if (ns === NS_SASL && el.name === 'auth') return this.saslFailure('encryption-required', 'STARTTLS first');
      throw new StreamError('policy-violation', 'STARTTLS is required on this server');
    }
    if (ns === NS_SASL) return this.handleSasl(el);
    const kind = stanzaKind(el);
    // Acks of an enabled session are counting mechanics, answered here; the rest of the
    // protocol (<enable/>, <resume/>) is the smacks plugin's.
    if (!kind && ns === NS_SM && this.sm && (el.name === 'r' || el.name === 'a')) return this.handleSmElement(el);
    const handler = this.hostCtx!.elementHandlers.get(this.hostCtx!.elementKey(ns ?? NS_CLIENT, el.name));
    if (!kind) {
      if (handler && this.user) return handler(this, el);
      throw new StreamError('unsupported-stanza-type', `unexpected element ${el.name}`);
    }
    if (!this.user) return this.handleUnauthenticated(el);
    // A hibernating session still processes what its client sent before the connection dropped.
    if (this.state !== 'bound' && this.state !== 'hibernated') return this.handleBind(el);
    return this.handleStanza(el);
  }

  // ---------- STARTTLS ----------

  private startTls(): void {
    if (this.secure || this.user) {
      this.sendElement(xml('failure', { xmlns: NS_TLS }));
      return this.close();
    }
    this.sendElement(xml('proceed', { xmlns: NS_TLS }));
    const raw = this.socket;
    // Only this session's listeners come off: the listener's own (connection counting per
    // address) must still see the TCP socket close.
    this.detach(raw);
    const tlsSocket = new TLSSocket(raw, { isServer: true, ...this.deps.certs.serverOptions() });
    tlsSocket.once('secure', () => {
      this.secure = true;
      this.log.debug('tls established', { protocol: tlsSocket.getProtocol() });
    });
    // A TLS or network error (a reset from a phone that lost its network) ends the connection;
    // its 'close' then decides between hibernating (stream management) and ending the session.
    tlsSocket.on('error', (err) => {
      this.log.debug('tls failed', { err: err.message });
      tlsSocket.destroy();
      raw.destroy();
    });
    this.socket = tlsSocket;
    this.binding = undefined;
    this.bindingDecided = false;
    // Anything the client pipelined after <starttls/> was sent in plaintext: it must not be
    // taken as part of the encrypted stream (STARTTLS command injection).
    this.queue.length = 0;
    this.parser.reset();
    this.state = 'header';
    this.headerSent = false;
    this.attach(tlsSocket);
  }

  // ---------- SASL ----------

  private saslFailure(condition: string, text?: string): void {
    const failure = xml('failure', { xmlns: NS_SASL }, xml(condition));
    if (text) failure.append(xml('text', { 'xml:lang': 'en' }, text));
    this.sendElement(failure);
  }

  private decode(el: Element): Buffer | undefined | 'bad' {
    const text = el.getText().trim();
    if (text === '') return undefined;
    if (text === '=') return Buffer.alloc(0);
    if (!BASE64.test(text)) return 'bad';
    return Buffer.from(text, 'base64');
  }

  /** The throttling key of an account: the prepared localpart where it has one, and the host. */
  private accountKey(username: string): string {
    let local = username;
    try {
      local = prepLocal(username);
    } catch {
      // Not a valid localpart: it cannot log in, but guesses at it still count under its name.
    }
    return `${local}@${this.host}`;
  }

  private gate(username: string): SaslRefusal | undefined {
    const refusal = this.deps.authThrottle.checkAccount(this.remoteAddress, this.accountKey(username), this.options.throttle);
    if (!refusal) return undefined;
    this.penalized = true;
    return { condition: 'temporary-auth-failure', text: this.refusalText(refusal) };
  }

  private refusalText(refusal: Refusal): string {
    const whose = refusal.scope === 'address' ? 'from your address' : 'for this account';
    return `too many failed logins ${whose}; try again in ${describeWait(refusal.retryAfterMs)}`;
  }

  private async refuse(refusal: Refusal): Promise<void> {
    this.authFailures++;
    this.log.info('authentication refused', { scope: refusal.scope, remote: this.remoteAddress });
    await this.failureDelay();
    this.saslFailure('temporary-auth-failure', this.refusalText(refusal));
    if (this.authFailures >= this.options.maxAuthFailures) {
      this.close(new StreamError('policy-violation', 'too many failed authentication attempts'));
    }
  }

  private failureDelay(): Promise<void> {
    const ms = this.options.failureDelayMs;
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => setTimeout(resolve, ms).unref());
  }

  private async handleSasl(el: Element): Promise<void> {
    if (this.user) throw new StreamError('not-authorized', 'already authenticated');
    if (el.name === 'abort') {
      this.sasl = undefined;
      return this.saslFailure('aborted');
    }
    let result: SaslResult;
    this.penalized = false;
    if (el.name === 'auth') {
      const mechanism = el.attrs.mechanism ?? '';
      // An address over its limit is refused before a mechanism even starts.
      const refusal = this.deps.authThrottle.checkAddress(this.remoteAddress, this.options.throttle);
      if (refusal) return this.refuse(refusal);
      const offered = this.offeredMechanisms();
      const session = offered.includes(mechanism)
        ? createSaslSession(mechanism, this.deps.accounts.saslBackend(this.host), {
          secret: this.deps.saslSecret,
          // Given exactly when -PLUS is offered: a `y` flag then means someone stripped it.
          channelBinding: offered.some((m) => m.endsWith('-PLUS')) ? this.binding : undefined,
          gate: (username) => this.gate(username),
          onBadCredentials: (username) => {
            this.penalized = true;
            this.deps.authThrottle.failed(this.remoteAddress, this.accountKey(username), this.options.throttle);
          },
        })
        : undefined;
      if (!session) return this.saslFailure('invalid-mechanism');
      const data = this.decode(el);
      if (data === 'bad') return this.saslFailure('incorrect-encoding');
      this.sasl = session;
      this.mechanism = mechanism;
      result = await session.start(data);
    } else if (el.name === 'response') {
      if (!this.sasl) return this.saslFailure('malformed-request', 'no authentication in progress');
      const data = this.decode(el);
      if (data === 'bad') {
        this.sasl = undefined;
        return this.saslFailure('incorrect-encoding');
      }
      result = await this.sasl.step(data ?? Buffer.alloc(0));
    } else {
      throw new StreamError('unsupported-stanza-type', `unexpected SASL element ${el.name}`);
    }
    if (result.kind === 'challenge') {
      this.sendElement(xml('challenge', { xmlns: NS_SASL }, result.data.toString('base64')));
      return;
    }
    this.sasl = undefined;
    if (result.kind === 'failure') {
      this.authFailures++;
      this.log.info('authentication failed', { condition: result.condition, mechanism: this.mechanism, remote: this.remoteAddress });
      // Guesses and refusals are answered late, so one stream cannot try quickly either.
      if (this.penalized) await this.failureDelay();
      this.saslFailure(result.condition, result.text);
      if (this.authFailures >= this.options.maxAuthFailures) {
        this.close(new StreamError('policy-violation', 'too many failed authentication attempts'));
      }
      return;
    }
    let user: string;
    try {
      user = prepLocal(result.username);
    } catch {
      return this.saslFailure('not-authorized');
    }
    this.user = user;
    // Binding data is only for authentication; an idle session should not keep it.
    this.binding = undefined;
    this.deps.authThrottle.succeeded(this.remoteAddress, `${user}@${this.host}`, this.options.throttle);
    this.log.info('authenticated', { user: `${user}@${this.host}`, mechanism: this.mechanism });
    this.sendElement(xml('success', { xmlns: NS_SASL }, result.data ? result.data.toString('base64') : ''));
    // RFC 6120 §6.4.6: the stream restarts after SASL success; nothing from the old stream counts.
    this.queue.length = 0;
    this.parser.reset();
    this.state = 'header';
    this.headerSent = false;
  }

  // ---------- before binding ----------

  private async handleUnauthenticated(el: Element): Promise<void> {
    // In-band registration (XEP-0077) and similar run before authentication, as IQs to the host.
    if (el.name === 'iq') {
      const payload = el.children.find((c): c is Element => typeof c !== 'string');
      if (payload) {
        const answer = await this.hostCtx!.hooks.run<Element | true>(
          `iq-preauth/${payload.attrs.xmlns ?? ''}:${payload.name}`, { stanza: el, payload, session: this });
        if (answer !== undefined) {
          if (answer !== true) this.send(answer);
          return;
        }
      }
    }
    throw new StreamError('not-authorized', 'authenticate first');
  }

  private async handleBind(el: Element): Promise<void> {
    const bind = el.name === 'iq' && el.attrs.type === 'set' ? el.getChild('bind', NS_BIND) : undefined;
    if (!bind) {
      if (el.name === 'iq' && el.attrs.type !== 'result' && el.attrs.type !== 'error') {
        this.send(errorReply(el, new StanzaError('not-authorized', 'bind a resource first')));
        return;
      }
      throw new StreamError('not-authorized', 'bind a resource first');
    }
    const requested = bind.getChildText('resource')?.trim();
    let resource: string;
    try {
      resource = requested ? prepResource(requested) : randomBytes(6).toString('hex');
    } catch (err) {
      const msg = err instanceof JidError ? err.message : 'invalid resource';
      this.send(errorReply(el, new StanzaError('bad-request', msg)));
      return;
    }
    // Another session under the same account and resource is replaced: it gets a conflict error.
    this.jid = Jid.of(this.user!, this.host, resource);
    clearTimeout(this.handshakeTimer);
    const old = this.deps.sessions.add(this);
    if (old && old !== this) {
      old.close(new StreamError('conflict', 'replaced by a new connection'));
    }
    this.state = 'bound';
    this.log.info('bound', { jid: this.jid.full });
    this.send(iqResult(el, xml('bind', { xmlns: NS_BIND }, xml('jid', {}, this.jid.full))));
    await this.hostCtx!.hooks.emit('resource-bind', { session: this });
  }

  // ---------- stanzas ----------

  private async handleStanza(el: Element): Promise<void> {
    const jid = this.jid!;
    if (el.attrs.from !== undefined) {
      const claimed = Jid.tryParse(el.attrs.from);
      // RFC 6120 §8.1.2.1: a client may only use its own full or bare JID.
      if (!claimed || (claimed.full !== jid.full && claimed.full !== jid.bare)) {
        throw new StreamError('invalid-from', 'the from address is not yours');
      }
    }
    el.attrs.from = jid.full;
    if (el.name === 'iq' && el.getChild('session', NS_SESSION) && !el.attrs.to) {
      this.send(iqResult(el));
      return;
    }
    let to: Jid;
    if (el.attrs.to === undefined || el.attrs.to === '') {
      if (el.name === 'presence') return this.handleBroadcastPresence(el);
      // RFC 6120 §8.1.1.1: no 'to' means the user's own account.
      to = jid.toBare();
      el.attrs.to = to.full;
    } else {
      const parsed = Jid.tryParse(el.attrs.to);
      if (!parsed) {
        if (el.attrs.type !== 'error') {
          const reply = errorReply(el, new StanzaError('jid-malformed'));
          delete reply.attrs.from;
          this.deliver(reply);
        }
        return;
      }
      to = parsed;
      el.attrs.to = to.full;
    }
    const kind = stanzaKind(el)!;
    const target = to.local === '' ? 'host' : to.resource === '' ? 'bare' : 'full';
    const commits = this.commits;
    const durable = commits ? (commit: Promise<void>) => { commits.push(commit); } : undefined;
    const ev: StanzaEvent = { stanza: el, from: jid, to, session: this, durable };
    if ((await this.hostCtx!.hooks.run(`pre-${kind}/${target}`, ev)) !== undefined) return;
    await this.deps.router.route(el, this, durable);
  }

  private async handleBroadcastPresence(el: Element): Promise<void> {
    const type = el.attrs.type;
    if (type !== undefined && type !== 'unavailable') {
      // Subscription requests and probes need a recipient; without one they mean nothing.
      if (type !== 'error') {
        const reply = errorReply(el, new StanzaError('bad-request', 'presence of this type needs a to address'));
        delete reply.attrs.from;
        this.deliver(reply);
      }
      return;
    }
    const jid = this.jid!;
    if (type === undefined) {
      const p = parseInt(el.getChildText('priority') ?? '0', 10);
      this.priority = Number.isFinite(p) ? Math.max(-128, Math.min(127, p)) : 0;
      this.available = true;
    } else {
      this.available = false;
      // Available presence after unavailable is initial presence again (RFC 6121 §4.2).
      this.sentInitialPresence = false;
    }
    this.presence = el;
    const host = this.hostCtx!;
    const ev: StanzaEvent = { stanza: el, from: jid, to: jid.toBare(), session: this };
    if (type === undefined && !this.sentInitialPresence) {
      this.sentInitialPresence = true;
      await host.hooks.emit('presence/initial', ev);
    }
    await host.hooks.emit('presence/broadcast', ev);
  }
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;').replace(/>/g, '&gt;');
}

/** Calls a delivery callback; a failing callback is a bug of its owner, logged, never fatal here. */
function tell(callback: DeliveryCallback, outcome: 'acked' | 'written' | 'failed', log: Logger): void {
  try {
    callback(outcome);
  } catch (err) {
    log.error('delivery callback failed', { err, outcome });
  }
}

/**
 * The copy of an unacknowledged stanza sent again on a resumed stream: marked with when it was
 * first sent (XEP-0203), unless it already carries a delay from this server.
 */
function resent(entry: UnackedStanza, host: string): Element {
  const { stanza } = entry;
  const delayed = stanza.children.some((c) => typeof c !== 'string' && c.name === 'delay'
    && c.attrs.xmlns === NS_DELAY && c.attrs.from === host);
  if (delayed) return stanza;
  const copy = cloneStanza(stanza);
  copy.append(xml('delay', { xmlns: NS_DELAY, from: host, stamp: new Date(entry.sentAt).toISOString() }));
  return copy;
}
