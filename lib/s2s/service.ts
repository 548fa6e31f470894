// The s2s core service: one outgoing stream per (local domain, remote domain) pair, opened on
// demand and reused, with stanzas queued while it is set up; the incoming streams of the s2s
// listeners; dialback verifications against the authoritative servers; and remote presence
// cleanup when streams die. Every local domain sends through it: hosts, service domains
// (conference.<host>, upload.<host>) and external components.
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Element } from 'ltx';
import { StanzaError, StreamError } from '../errors.js';
import { Jid } from '../jid.js';
import type { Logger } from '../log.js';
import type { CertStore } from '../net/certs.js';
import type { XmlLimits } from '../xml/stream-parser.js';
import { policyFor, type S2SConfig } from './config.js';
import { connectFirst, tlsClientOptions, type Connection } from './connect.js';
import { IncomingStream, type Verdict } from './incoming.js';
import { OutgoingStream, SetupError, type VerifyRequest } from './outgoing.js';
import { RemotePresence } from './remote-presence.js';
import { resolveTargets, systemResolver, type SrvResolver } from './resolve.js';
import type { EndReason } from './stream.js';
import type { TrustStore } from './trust.js';

export interface S2SServiceDeps {
  log: Logger;
  /** The current `s2s:` settings (they change with a reload). */
  config(): S2SConfig;
  xmlLimits(): Partial<XmlLimits>;
  certs: CertStore;
  /** The trust anchors of the current configuration (a reload may replace them). */
  trust(): TrustStore;
  secret: string;
  resolver?: SrvResolver;
  /** A domain served here: host, service domain or component. */
  isLocal(domain: string): boolean;
  /** Routes a stanza that arrived from a remote server (or that we make on its behalf). */
  route(stanza: Element): void;
  /** Answers a local sender's stanza with an error (not for errors; subscriptions are dropped). */
  bounce(stanza: Element, error: StanzaError): void;
}

/** An outgoing pair: its stream once connected, and what waits for it. */
interface Outgoing {
  local: string;
  remote: string;
  stream: OutgoingStream | undefined;
  queue: Element[];
  abort: AbortController;
  timer: NodeJS.Timeout | undefined;
  removed: boolean;
}

export class S2SService {
  private readonly outgoing = new Map<string, Outgoing>();
  private readonly incoming = new Set<IncomingStream>();
  private readonly presence = new RemotePresence();
  private readonly resolver: SrvResolver;
  /** Open outgoing connections, stanza streams and verification streams together. */
  private outgoingConnections = 0;
  private verifications = 0;
  private closing = false;

  constructor(private readonly deps: S2SServiceDeps) {
    this.resolver = deps.resolver ?? systemResolver();
  }

  private get config(): S2SConfig {
    return this.deps.config();
  }

  // ---------- outgoing ----------

  /** Sends a stanza from a local domain to a remote one, connecting first if needed. */
  send(stanza: Element, from: Jid, to: Jid): void {
    const config = this.config;
    if (!config.enabled || this.closing) return this.deps.bounce(stanza, new StanzaError('remote-server-not-found'));
    if (!this.deps.isLocal(from.domain)) {
      // Never relay between two remote domains.
      this.deps.log.debug('s2s: dropping a stanza whose sender is not local', { from: from.full, to: to.full });
      return;
    }
    let entry = this.outgoing.get(pairKey(from.domain, to.domain));
    if (entry?.stream?.ready) return entry.stream.sendStanza(stanza);
    if (!entry) {
      if (this.outgoingConnections >= config.max_outgoing_streams) {
        return this.deps.bounce(stanza, new StanzaError('resource-constraint', 'too many server connections'));
      }
      entry = this.open(from.domain, to.domain);
    }
    if (entry.queue.length >= config.max_queue) {
      return this.deps.bounce(stanza, new StanzaError('resource-constraint', 'too many stanzas waiting for this server'));
    }
    entry.queue.push(stanza);
  }

  private open(local: string, remote: string): Outgoing {
    const entry: Outgoing = { local, remote, stream: undefined, queue: [], abort: new AbortController(), timer: undefined, removed: false };
    this.outgoing.set(pairKey(local, remote), entry);
    this.outgoingConnections++;
    entry.timer = setTimeout(() => this.fail(entry, new SetupError('remote-server-timeout', 'setup_timeout reached')), this.config.setup_timeout);
    entry.timer.unref();
    this.establish(entry).then((stream) => {
      if (entry.removed) return stream.close();
      clearTimeout(entry.timer);
      this.deps.log.info('s2s stream ready', { local, remote, auth: stream.auth });
      for (const stanza of entry.queue.splice(0)) stream.sendStanza(stanza);
      this.regained(remote);
    }, (err: unknown) => {
      this.fail(entry, err instanceof SetupError ? err : new SetupError('remote-server-not-found', String(err)));
    });
    return entry;
  }

  private async establish(entry: Outgoing): Promise<OutgoingStream> {
    const config = this.config;
    const conn = await this.connect(entry.local, entry.remote, entry.abort.signal);
    const stream = new OutgoingStream(conn.socket, {
      log: this.deps.log,
      xmlLimits: this.deps.xmlLimits(),
      idleTimeoutMs: config.idle_timeout,
      local: entry.local,
      remote: entry.remote,
      secure: conn.secure,
      certs: this.deps.certs,
      trust: this.deps.trust(),
      policy: policyFor(config, entry.remote),
      secret: this.deps.secret,
    });
    entry.stream = stream;
    stream.onEnd(() => this.remove(entry));
    await stream.result;
    return stream;
  }

  /** Resolves the domain and connects to the first target that answers. */
  private async connect(local: string, remote: string, signal: AbortSignal): Promise<Connection> {
    const config = this.config;
    let targets;
    try {
      targets = await resolveTargets(remote, { routes: config.routes, resolver: this.resolver });
    } catch (err) {
      throw new SetupError('remote-server-not-found', `cannot resolve ${remote}: ${(err as Error).message}`);
    }
    if (signal.aborted) throw new SetupError('remote-server-timeout', 'setup_timeout reached');
    const conn = await connectFirst(targets, {
      timeoutMs: config.connect_timeout,
      tls: tlsClientOptions(this.deps.certs, local, remote),
      signal,
      onFailure: (t, err) => this.deps.log.info('s2s connect failed', { remote, host: t.host, port: t.port, err: err.message }),
    });
    if (signal.aborted) {
      conn?.socket.destroy();
      throw new SetupError('remote-server-timeout', 'setup_timeout reached');
    }
    if (!conn) throw new SetupError('remote-server-not-found', `no server for ${remote} accepts connections`);
    return conn;
  }

  /** The pair could not be set up: its queue bounces with the reason. */
  private fail(entry: Outgoing, err: SetupError): void {
    if (entry.removed) return;
    this.deps.log.info('s2s stream failed', { local: entry.local, remote: entry.remote, condition: err.condition, why: err.message });
    const queued = entry.queue.splice(0);
    this.remove(entry);
    entry.abort.abort();
    entry.stream?.close();
    for (const stanza of queued) this.deps.bounce(stanza, new StanzaError(err.condition));
  }

  private remove(entry: Outgoing): void {
    if (entry.removed) return;
    entry.removed = true;
    clearTimeout(entry.timer);
    this.outgoingConnections--;
    const key = pairKey(entry.local, entry.remote);
    if (this.outgoing.get(key) === entry) this.outgoing.delete(key);
    // Stanzas that were queued when a set-up stream died bounce; a ready stream has none.
    const queued = entry.queue.splice(0);
    for (const stanza of queued) this.deps.bounce(stanza, new StanzaError('remote-server-not-found'));
  }

  // ---------- dialback verification (we are the receiving server) ----------

  private async verify(request: VerifyRequest): Promise<Verdict> {
    const config = this.config;
    // Each verification is a connection; a peer must not be able to make us open them unbounded.
    if (this.verifications >= config.max_verifications || this.outgoingConnections >= config.max_outgoing_streams) {
      return { error: 'resource-constraint' };
    }
    this.verifications++;
    this.outgoingConnections++;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), config.setup_timeout);
    timer.unref();
    let stream: OutgoingStream | undefined;
    try {
      const conn = await this.connect(request.receiving, request.originating, abort.signal);
      stream = new OutgoingStream(conn.socket, {
        log: this.deps.log,
        xmlLimits: this.deps.xmlLimits(),
        idleTimeoutMs: 0,
        local: request.receiving,
        remote: request.originating,
        secure: conn.secure,
        certs: this.deps.certs,
        trust: this.deps.trust(),
        policy: 'dialback',
        secret: this.deps.secret,
        verify: request,
      });
      const timedOut = new Promise<never>((_, reject) => {
        if (abort.signal.aborted) reject(new SetupError('remote-server-timeout', 'verification timed out'));
        abort.signal.addEventListener('abort', () => reject(new SetupError('remote-server-timeout', 'verification timed out')));
      });
      const verdict = await Promise.race([stream.result, timedOut]);
      return verdict === 'valid' ? 'valid' : 'invalid';
    } catch (err) {
      this.deps.log.info('dialback verification failed', { domain: request.originating, err: (err as Error).message });
      return { error: err instanceof SetupError ? err.condition : 'remote-server-not-found' };
    } finally {
      clearTimeout(timer);
      stream?.close();
      this.verifications--;
      this.outgoingConnections--;
    }
  }

  // ---------- incoming ----------

  /** A connection on an s2s listener; `directTls`: XEP-0368, TLS from the first byte. */
  accept(socket: Socket, directTls: boolean): void {
    const config = this.config;
    if (this.closing || this.incoming.size >= config.max_incoming_streams) {
      this.deps.log.info('s2s: refusing a connection, too many incoming streams', { limit: config.max_incoming_streams });
      socket.destroy();
      return;
    }
    if (!directTls) return this.startIncoming(socket, false);
    const secured = new TLSSocket(socket, {
      isServer: true,
      ...this.deps.certs.serverOptions(),
      ALPNProtocols: ['xmpp-server'],
      requestCert: true,
      rejectUnauthorized: false,
    });
    secured.on('error', () => secured.destroy());
    // The stream's own handshake timer starts with the stream; until then this one stops a peer
    // that connects and never finishes TLS from holding the socket.
    const tlsTimer = setTimeout(() => secured.destroy(), config.handshake_timeout);
    tlsTimer.unref();
    secured.once('close', () => clearTimeout(tlsTimer));
    secured.once('secure', () => {
      clearTimeout(tlsTimer);
      this.startIncoming(secured, true);
    });
  }

  private startIncoming(socket: Socket, secure: boolean): void {
    const config = this.config;
    const stream: IncomingStream = new IncomingStream(socket, {
      certs: this.deps.certs,
      trust: this.deps.trust(),
      secret: this.deps.secret,
      policyFor: (domain) => policyFor(this.config, domain),
      isLocal: (domain) => this.deps.isLocal(domain),
      verify: (request) => this.verify(request),
      authenticated: (_stream, domain) => this.regained(domain),
      stanza: (_stream, stanza, from) => this.received(stanza, from),
    }, {
      log: this.deps.log,
      xmlLimits: this.deps.xmlLimits(),
      idleTimeoutMs: config.idle_timeout,
      secure,
      handshakeTimeoutMs: config.handshake_timeout,
      stanzaRate: config.stanza_rate,
      stanzaBurst: config.stanza_burst,
    });
    this.incoming.add(stream);
    stream.onEnd((reason) => this.incomingEnded(stream, reason));
  }

  private received(stanza: Element, from: Jid): void {
    const to = stanza.attrs.to;
    if (stanza.name === 'presence' && to) {
      const toJid = Jid.tryParse(to);
      if (toJid) this.presence.observe(stanza, from, toJid);
    }
    this.deps.route(stanza);
  }

  private incomingEnded(stream: IncomingStream, reason: EndReason): void {
    this.incoming.delete(stream);
    // A peer closing an idle stream politely says nothing about its users; a stream that died does.
    if (reason === 'clean' || this.closing) return;
    for (const domain of stream.domains.keys()) {
      if ([...this.incoming].some((s) => s.domains.has(domain))) continue;
      for (const unavailable of this.presence.lose(domain)) this.deps.route(unavailable);
    }
  }

  /** A stream with the domain is up: probe for the presence lost when the last one died. */
  private regained(domain: string): void {
    for (const probe of this.presence.regain(domain)) this.deps.route(probe);
  }

  // ---------- administration ----------

  /** Lines for `parleyctl stats`. */
  stats(): string[] {
    const lines = [`s2s streams: out=${this.outgoing.size} in=${this.incoming.size} verifications=${this.verifications} remote presences=${this.presence.size}`];
    for (const e of this.outgoing.values()) {
      const s = e.stream;
      lines.push(`s2s out\t${e.local} -> ${e.remote}\tstate=${s?.ready ? 'ready' : 'connecting'}\tauth=${s?.auth ?? '-'}\tqueue=${e.queue.length}\tout=${s?.stanzasOut ?? 0}`);
    }
    for (const s of this.incoming) {
      const domains = [...s.domains].map(([d, m]) => `${d}(${m})`).join(',') || '-';
      lines.push(`s2s in\t${domains} -> ${s.localDomain || '-'}\tin=${s.stanzasIn}`);
    }
    return lines;
  }

  async close(): Promise<void> {
    this.closing = true;
    this.resolver.cancel?.();
    for (const entry of [...this.outgoing.values()]) {
      entry.stream?.close(new StreamError('system-shutdown'));
      this.fail(entry, new SetupError('remote-server-not-found', 'server shutting down'));
    }
    for (const s of [...this.incoming]) s.close(new StreamError('system-shutdown'));
  }
}

function pairKey(local: string, remote: string): string {
  return `${local}\u0000${remote}`;
}
