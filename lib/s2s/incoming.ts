// An incoming server stream: STARTTLS first (or Direct TLS), then the peer authenticates its
// domain with SASL EXTERNAL (offered only when its certificate validates for the stream's `from`,
// XEP-0178) or dialback (XEP-0220; more domain pairs can be added to the stream the same way).
// Every stanza's `to` must be a domain served here and its (`from`, `to`) domains a pair
// authenticated on the stream (RFC 6120 §4.9.3, §13.1; XEP-0220 §4.5). This stream also answers dialback verifications (db:verify) for
// keys we handed out, which needs no authentication.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { STANZA_ERROR_TYPES, StanzaError, StreamError, type StanzaErrorCondition } from '../errors.js';
import { Jid } from '../jid.js';
import type { CertStore } from '../net/certs.js';
import { NS_SASL, NS_SERVER, NS_STREAM, NS_TLS } from '../xml/ns.js';
import type { StreamHeader } from '../xml/stream-parser.js';
import { stanzaKind } from '../xml/stanza.js';
import type { S2SAuthPolicy } from './config.js';
import { dialbackKeyValid } from './dialback-key.js';
import type { AuthMethod, VerifyRequest } from './outgoing.js';
import { NS_DIALBACK, NS_DIALBACK_FEATURE, ServerStream, type ServerStreamOptions } from './stream.js';
import { certificateValidFor, type TrustStore } from './trust.js';

export type Verdict = 'valid' | 'invalid' | { error: StanzaErrorCondition };

export interface IncomingDeps {
  certs: CertStore;
  trust: TrustStore;
  secret: string;
  policyFor(domain: string): S2SAuthPolicy;
  isLocal(domain: string): boolean;
  /** Asks the authoritative server of `originating` whether the key is valid. */
  verify(request: VerifyRequest): Promise<Verdict>;
  /** A domain got authenticated on the stream. */
  authenticated(stream: IncomingStream, domain: string, method: AuthMethod): void;
  /** A stanza whose addresses passed the checks. */
  stanza(stream: IncomingStream, stanza: Element, from: Jid): void;
}

export interface IncomingOptions extends ServerStreamOptions {
  secure: boolean;
  handshakeTimeoutMs: number;
  stanzaRate: number;
  stanzaBurst: number;
}

export class IncomingStream extends ServerStream {
  /** Remote domains that may send stanzas on this stream, with how each proved itself. */
  readonly domains = new Map<string, AuthMethod>();
  /**
   * The authenticated (remote, local) domain pairs (XEP-0220 §4.5): a stanza is taken only for a
   * pair the peer asked for and got, the stream's own (`to`) domain or one added with db:result.
   */
  private readonly pairs = new Set<string>();
  /** The local domain the peer asked for in its header. */
  localDomain = '';
  /** The peer's domain from its header, if it gave one. */
  peerDomain: string | undefined;
  private streamId = '';
  private opened = false;
  private readonly pendingDialback = new Set<string>();
  private tokens: number;
  private lastRefill = Date.now();
  /** Stanzas that arrived past the rate, in order, waiting for tokens (the socket is paused). */
  private readonly held: Element[] = [];
  private drainTimer: NodeJS.Timeout | undefined;
  private readonly handshakeTimer: NodeJS.Timeout;

  constructor(socket: Socket, private readonly deps: IncomingDeps, private readonly o: IncomingOptions) {
    super(socket, o);
    this.secure = o.secure;
    this.tokens = o.stanzaBurst;
    if (o.secure) this.peerCertificate = deps.trust.inspect(socket as TLSSocket);
    this.handshakeTimer = setTimeout(() => {
      if (this.domains.size === 0) this.close(new StreamError('connection-timeout', 'no authentication in time'));
    }, o.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    this.onEnd(() => {
      clearTimeout(this.handshakeTimer);
      clearTimeout(this.drainTimer);
      this.held.length = 0;
    });
  }

  protected writeOpeningForError(): void {
    this.writeHeader({ from: this.localDomain || undefined, id: this.streamId || undefined });
  }

  protected onHeader(h: StreamHeader): void {
    if (h.ns !== NS_STREAM) return this.close(new StreamError('invalid-namespace', 'not an XMPP stream'));
    if (h.contentNs !== NS_SERVER) return this.close(new StreamError('invalid-namespace', 'server streams use jabber:server'));
    const to = Jid.tryParse(h.attrs.to ?? '');
    if (!to || to.local || to.resource || !this.deps.isLocal(to.domain)) {
      return this.close(new StreamError('host-unknown', `${h.attrs.to ?? '(no to)'} is not served here`));
    }
    if (this.opened && to.domain !== this.localDomain) return this.close(new StreamError('host-unknown', 'the restarted stream names another domain'));
    this.localDomain = to.domain;
    const from = h.attrs.from ? Jid.tryParse(h.attrs.from) : undefined;
    if (h.attrs.from && (!from || from.local || from.resource)) return this.close(new StreamError('invalid-from', 'from is not a domain'));
    if (from) this.peerDomain = from.domain;
    this.opened = true;
    this.streamId = randomBytes(16).toString('hex');
    this.writeHeader({ from: this.localDomain, to: this.peerDomain, id: this.streamId });
    this.sendElement(this.features());
  }

  private features(): Element {
    const features = xml('stream:features');
    if (!this.secure) {
      features.append(xml('starttls', { xmlns: NS_TLS }, xml('required')));
      return features;
    }
    if (this.domains.size === 0 && this.peerDomain && this.externalAllowed(this.peerDomain)) {
      features.append(xml('mechanisms', { xmlns: NS_SASL }, xml('mechanism', {}, 'EXTERNAL')));
    }
    // Also after authentication: further domain pairs can be added with dialback.
    features.append(xml('dialback', { xmlns: NS_DIALBACK_FEATURE }, xml('errors')));
    return features;
  }

  private externalAllowed(domain: string): boolean {
    return certificateValidFor(this.peerCertificate, domain);
  }

  protected onElement(el: Element): void {
    const ns = el.attrs.xmlns;
    if (ns === NS_TLS && el.name === 'starttls') return this.startTls();
    if (!this.secure) return this.close(new StreamError('policy-violation', 'STARTTLS is required first'));
    if (ns === NS_SASL && el.name === 'auth') return this.onAuth(el);
    if (ns === NS_DIALBACK && el.name === 'result') return void this.onDialbackResult(el);
    if (ns === NS_DIALBACK && el.name === 'verify') return this.onDialbackVerify(el);
    if (stanzaKind(el) && ns === undefined) return this.onStanza(el);
    this.close(new StreamError('unsupported-stanza-type', `<${el.name}/> is not understood here`));
  }

  private startTls(): void {
    if (this.secure) return this.close(new StreamError('policy-violation', 'TLS is already on'));
    this.sendElement(xml('proceed', { xmlns: NS_TLS }));
    const secured = new TLSSocket(this.socket, {
      isServer: true,
      ...this.deps.certs.serverOptions(),
      // The peer's certificate is what SASL EXTERNAL rests on; it is judged by the trust store.
      requestCert: true,
      rejectUnauthorized: false,
    });
    secured.once('secure', () => {
      this.secure = true;
      this.peerCertificate = this.deps.trust.inspect(secured);
    });
    this.swapSocket(secured);
  }

  private onAuth(el: Element): void {
    const fail = (condition: string) => {
      this.sendElement(xml('failure', { xmlns: NS_SASL }, xml(condition)));
    };
    if (this.domains.size > 0) return fail('not-authorized');
    if (el.attrs.mechanism !== 'EXTERNAL') return fail('invalid-mechanism');
    const text = el.text().trim();
    let authzid = '';
    if (text !== '' && text !== '=') {
      authzid = Buffer.from(text, 'base64').toString('utf8');
    }
    // A decoded "=" is an authzid no server can have; older Parley sent it meaning "none", so it
    // is read as no authzid rather than refused.
    const domain = authzid === '' || authzid === '=' ? this.peerDomain : authzid;
    // XEP-0178 §3: the identity must be the stream's from (RFC 6120 §6.5.6 invalid-authzid
    // otherwise), and the certificate must name it.
    if (domain !== this.peerDomain) return fail('invalid-authzid');
    if (!domain || !this.externalAllowed(domain)) return fail('not-authorized');
    this.sendElement(xml('success', { xmlns: NS_SASL }));
    this.grant(domain, this.localDomain, 'external');
    this.restartStream();
  }

  private grant(domain: string, local: string, method: AuthMethod): void {
    this.pairs.add(pairOf(domain, local));
    // Another local domain for a remote one already proven adds only the pair.
    if (this.domains.has(domain)) return;
    this.domains.set(domain, method);
    this.log.info('peer authenticated', { domain, method, local: this.localDomain });
    this.deps.authenticated(this, domain, method);
  }

  private dialbackError(name: 'result' | 'verify', attrs: Record<string, string>, condition: StanzaErrorCondition): void {
    const error = new StanzaError(condition, undefined, { type: STANZA_ERROR_TYPES[condition] });
    this.sendElement(xml(`db:${name}`, { ...attrs, type: 'error' }, error.toElement()));
  }

  private async onDialbackResult(el: Element): Promise<void> {
    const originating = Jid.tryParse(el.attrs.from ?? '');
    const receiving = Jid.tryParse(el.attrs.to ?? '');
    if (!originating || originating.local || originating.resource || !receiving) {
      return this.close(new StreamError('improper-addressing', 'db:result needs from and to domains'));
    }
    const O = originating.domain;
    const R = receiving.domain;
    const reply = { from: R, to: O };
    if (!this.deps.isLocal(R)) return this.dialbackError('result', reply, 'item-not-found');
    // Our own domains are never authenticated from outside.
    if (this.deps.isLocal(O)) return this.dialbackError('result', reply, 'not-authorized');
    if (this.domains.has(O)) {
      this.sendElement(xml('db:result', { ...reply, type: 'valid' }));
      return this.grant(O, R, this.domains.get(O)!);
    }
    const certValid = certificateValidFor(this.peerCertificate, O);
    if (this.deps.policyFor(O) === 'certificate' && !certValid) {
      this.log.info('dialback refused by policy', { domain: O });
      return this.dialbackError('result', reply, 'not-authorized');
    }
    if (certValid) {
      // XEP-0344: a certificate that validates for the domain makes asking its server pointless.
      this.sendElement(xml('db:result', { ...reply, type: 'valid' }));
      return this.grant(O, R, 'external');
    }
    // One verification per domain at a time: a peer repeating itself cannot multiply our connections.
    if (this.pendingDialback.has(O)) return;
    this.pendingDialback.add(O);
    let verdict: Verdict;
    try {
      verdict = await this.deps.verify({ receiving: R, originating: O, streamId: this.streamId, key: el.text() });
    } finally {
      this.pendingDialback.delete(O);
    }
    if (this.closed) return;
    if (verdict === 'valid') {
      this.sendElement(xml('db:result', { ...reply, type: 'valid' }));
      return this.grant(O, R, 'dialback');
    }
    if (verdict === 'invalid') {
      this.sendElement(xml('db:result', { ...reply, type: 'invalid' }));
      return this.close(new StreamError('not-authorized', `dialback key for ${O} is invalid`));
    }
    this.dialbackError('result', reply, verdict.error);
  }

  /** We are the authoritative server: is this a key we made for that stream? */
  private onDialbackVerify(el: Element): void {
    const { from, to, id } = el.attrs;
    if (!from || !to || !id) return this.close(new StreamError('improper-addressing', 'db:verify needs from, to and id'));
    const reply = { from: to, to: from, id };
    if (!this.deps.isLocal(to)) return this.dialbackError('verify', reply, 'item-not-found');
    const valid = dialbackKeyValid(this.deps.secret, from, to, id, el.text());
    this.sendElement(xml('db:verify', { ...reply, type: valid ? 'valid' : 'invalid' }));
  }

  private onStanza(el: Element): void {
    if (this.domains.size === 0) return this.close(new StreamError('not-authorized', 'authenticate first'));
    // Over the rate, the peer is slowed down, not cut off: closing the stream would lose what
    // it had in flight (a busy remote MUC, say). What the last read chunk still held waits here.
    if (this.held.length > 0 || !this.takeToken()) return this.hold(el);
    this.accept(el);
  }

  private hold(el: Element): void {
    this.held.push(el);
    this.socket.pause();
    if (this.drainTimer === undefined) this.scheduleDrain();
  }

  private scheduleDrain(): void {
    const wait = Math.max(1, Math.ceil(((1 - this.tokens) / this.o.stanzaRate) * 1000));
    this.drainTimer = setTimeout(() => {
      this.drainTimer = undefined;
      while (this.held.length > 0 && !this.closed && this.takeToken()) this.accept(this.held.shift()!);
      if (this.closed) return;
      if (this.held.length > 0) this.scheduleDrain();
      else this.socket.resume();
    }, wait);
  }

  private accept(el: Element): void {
    const from = Jid.tryParse(el.attrs.from ?? '');
    const to = Jid.tryParse(el.attrs.to ?? '');
    if (!from || !to) return this.close(new StreamError('improper-addressing', 'stanzas need valid from and to addresses'));
    if (!this.domains.has(from.domain)) return this.close(new StreamError('invalid-from', `${from.domain} is not authenticated on this stream`));
    if (!this.deps.isLocal(to.domain)) return this.close(new StreamError('host-unknown', `${to.domain} is not served here`));
    if (!this.pairs.has(pairOf(from.domain, to.domain))) {
      // RFC 6120 §4.9.3.9: the from is not validated as negotiated, which is per domain pair.
      return this.close(new StreamError('invalid-from', `${from.domain} is not authenticated for ${to.domain} on this stream`));
    }
    this.stanzasIn++;
    this.touch();
    this.deps.stanza(this, el, from);
  }

  /** Token bucket: stanza_rate per second on average, stanza_burst at once. */
  private takeToken(): boolean {
    const now = Date.now();
    this.tokens = Math.min(this.o.stanzaBurst, this.tokens + ((now - this.lastRefill) / 1000) * this.o.stanzaRate);
    this.lastRefill = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

function pairOf(remote: string, local: string): string {
  return `${remote} ${local}`;
}
