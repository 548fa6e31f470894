// A client-to-server stream (RFC 6120): STARTTLS, SASL, resource binding, then stanzas.
// The session processes its stanzas one at a time; while a handler waits for I/O the socket is
// paused, so a fast sender cannot make the server buffer without bound (backpressure).
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
import { NS_BIND, NS_CLIENT, NS_SASL, NS_SESSION, NS_STREAM, NS_TLS } from '../xml/ns.js';
import { errorReply, iqResult, stanzaKind } from '../xml/stanza.js';
import { serialize } from '../xml/serialize.js';
import type { SessionRegistry } from './registry.js';
import type { ClientSession, SessionStats } from './types.js';

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

type State = 'header' | 'features' | 'bound' | 'closed';

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
  private readonly parser: StreamParser;
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
  readonly remoteAddress: string | undefined;
  private readonly queue: Element[] = [];
  private processing = false;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private sentInitialPresence = false;
  private readonly connectedAt = Date.now();
  private stanzasIn = 0;
  private stanzasOut = 0;

  constructor(socket: Socket, private readonly deps: C2SDeps, private readonly options: C2SOptions) {
    this.id = `c2s-${(++sessionCounter).toString(36)}-${randomBytes(3).toString('hex')}`;
    this.log = deps.log.child({ session: this.id });
    this.socket = socket;
    this.secure = options.directTls;
    this.remoteAddress = socket.remoteAddress ?? (socket as Socket & { _parent?: Socket })._parent?.remoteAddress;
    this.parser = new StreamParser({
      streamStart: (h) => this.onStreamStart(h),
      stanza: (el) => this.enqueue(el),
      streamEnd: () => this.close(),
      error: (err) => this.close(err),
    }, options.xmlLimits);
    this.attach(socket);
    this.handshakeTimer = setTimeout(() => {
      if (this.state !== 'bound') this.close(new StreamError('connection-timeout', 'stream negotiation took too long'));
    }, options.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    this.log.debug('connected', { remote: socket.remoteAddress });
  }

  // ---------- socket plumbing ----------

  private attach(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => this.parser.write(chunk));
    socket.on('error', (err) => this.log.debug('socket error', { err: err.message }));
    socket.on('close', () => this.cleanup());
    if (this.options.idleTimeoutMs > 0) {
      socket.setTimeout(this.options.idleTimeoutMs, () => this.close(new StreamError('connection-timeout')));
    }
  }

  private write(data: string): void {
    if (this.state === 'closed' || this.socket.destroyed) return;
    this.socket.write(data);
    if (this.socket.writableLength > this.options.sendQueueBytes) {
      this.log.warn('client too slow, closing', { queued: this.socket.writableLength });
      this.state = 'closed';
      this.socket.destroy();
    }
  }

  deliver(stanza: Element): void {
    const filters = this.hostCtx?.outgoingFilters.values();
    if (filters) {
      for (const filter of filters) {
        try {
          if (filter(this, stanza)) return;
        } catch (err) {
          this.log.error('outgoing filter failed', { err });
        }
      }
    }
    this.send(stanza);
  }

  send(stanza: Element): void {
    this.stanzasOut++;
    this.write(serialize(stanza));
  }

  stats(): SessionStats {
    return {
      connectedAt: this.connectedAt,
      stanzasIn: this.stanzasIn,
      stanzasOut: this.stanzasOut,
      queued: this.queue.length,
      sendBuffer: this.socket.writableLength,
    };
  }

  sendElement(el: Element): void {
    this.write(serialize(el));
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
    if (error) {
      if (!this.headerSent) this.sendHeader(undefined, this.host || 'localhost');
      this.log.info('stream error', { condition: error.condition, text: error.text });
      this.sendElement(error.toElement());
    }
    if (this.headerSent) this.write('</stream:stream>');
    this.state = 'closed';
    this.socket.end();
    // A client that never closes its side must not hold the socket forever.
    setTimeout(() => this.socket.destroy(), 2000).unref();
    this.cleanup();
  }

  private cleanupDone = false;
  private cleanup(): void {
    if (this.cleanupDone) return;
    this.cleanupDone = true;
    this.state = 'closed';
    clearTimeout(this.handshakeTimer);
    this.queue.length = 0;
    if (this.jid && this.deps.sessions.remove(this)) {
      const host = this.hostCtx!;
      const wasAvailable = this.available;
      this.available = false;
      void (async () => {
        if (wasAvailable) {
          const unavailable = xml('presence', { type: 'unavailable', from: this.jid!.full });
          this.presence = unavailable;
          await host.hooks.emit('presence/broadcast', { stanza: unavailable, from: this.jid!, to: this.jid!.toBare(), session: this });
        }
        await host.hooks.emit('resource-unbind', { session: this });
      })().catch((err: unknown) => this.log.error('unbind hooks failed', { err }));
    }
    this.log.debug('closed');
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
      try {
        await this.handle(el);
      } catch (err) {
        if (err instanceof StreamError) this.close(err);
        else {
          this.log.error('stanza handling failed', { err });
          this.close(new StreamError('internal-server-error'));
        }
      }
    }
    this.processing = false;
    if (this.state !== 'closed' && this.socket.isPaused()) this.socket.resume();
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
    const handler = this.hostCtx!.elementHandlers.get(this.hostCtx!.elementKey(ns ?? NS_CLIENT, el.name));
    if (!kind) {
      if (handler && this.user) return handler(this, el);
      throw new StreamError('unsupported-stanza-type', `unexpected element ${el.name}`);
    }
    if (!this.user) return this.handleUnauthenticated(el);
    if (this.state !== 'bound') return this.handleBind(el);
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
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    raw.removeAllListeners('timeout');
    raw.setTimeout(0);
    const tlsSocket = new TLSSocket(raw, { isServer: true, ...this.deps.certs.serverOptions() });
    tlsSocket.once('secure', () => {
      this.secure = true;
      this.log.debug('tls established', { protocol: tlsSocket.getProtocol() });
    });
    tlsSocket.on('error', (err) => {
      this.log.debug('tls failed', { err: err.message });
      this.state = 'closed';
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
    const ev: StanzaEvent = { stanza: el, from: jid, to, session: this };
    if ((await this.hostCtx!.hooks.run(`pre-${kind}/${target}`, ev)) !== undefined) return;
    await this.deps.router.route(el, this);
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
