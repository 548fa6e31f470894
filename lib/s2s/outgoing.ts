// An outgoing server stream (RFC 6120 §4-§6): header, STARTTLS when the connection is not Direct
// TLS yet, then authentication of our domain to the peer: SASL EXTERNAL when the peer offers it
// (it does when our certificate validates for us, XEP-0178), else dialback (XEP-0220) when the
// policy allows it. A stream for stanzas ends in `ready`; a verification stream (the receiving
// server's side of dialback) only asks the authoritative server whether a key is valid.
import type { Socket } from 'node:net';
import tls from 'node:tls';
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StreamError, type StanzaErrorCondition } from '../errors.js';
import type { CertStore } from '../net/certs.js';
import { NS_SASL, NS_SERVER, NS_STREAM, NS_TLS } from '../xml/ns.js';
import type { StreamHeader } from '../xml/stream-parser.js';
import type { S2SAuthPolicy } from './config.js';
import { tlsClientOptions } from './connect.js';
import { dialbackKey } from './dialback-key.js';
import { NS_DIALBACK, ServerStream, type ServerStreamOptions } from './stream.js';
import { certificateValidFor, type TrustStore } from './trust.js';

export type AuthMethod = 'external' | 'dialback';

/** Why a stream could not be set up, as the stanza error its queued stanzas bounce with. */
export class SetupError extends Error {
  constructor(readonly condition: StanzaErrorCondition, message: string) {
    super(message);
  }
}

export interface VerifyRequest {
  /** The receiving server (ours) that got the key. */
  receiving: string;
  /** The originating domain that claims the key, served by the peer we connect to. */
  originating: string;
  streamId: string;
  key: string;
}

export interface OutgoingOptions extends ServerStreamOptions {
  local: string;
  remote: string;
  secure: boolean;
  certs: CertStore;
  trust: TrustStore;
  policy: S2SAuthPolicy;
  secret: string;
  /** Set for a dialback verification stream instead of a stanza stream. */
  verify?: VerifyRequest;
}

type State = 'header' | 'features' | 'starttls' | 'sasl' | 'dialback' | 'verify' | 'ready';

export class OutgoingStream extends ServerStream {
  readonly local: string;
  readonly remote: string;
  auth: AuthMethod | undefined;
  private state: State = 'header';
  private streamId = '';
  private authenticated = false;
  private triedExternal = false;
  private settle!: { resolve(v: string): void; reject(e: SetupError): void };
  /** Resolves when stanzas can flow (`ready`), or with the verdict of a verification. */
  readonly result: Promise<string>;

  constructor(socket: Socket, private readonly o: OutgoingOptions) {
    super(socket, o);
    this.local = o.local;
    this.remote = o.remote;
    this.secure = o.secure;
    this.result = new Promise<string>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // Nobody may be waiting yet when it fails; the owner reads the result when it cares.
    this.result.catch(() => undefined);
    this.onEnd((reason) => this.settle.reject(new SetupError('remote-server-not-found', `stream ended (${reason}) during ${this.state}`)));
    if (o.secure) this.inspectPeer();
    this.openStream();
  }

  get ready(): boolean {
    return this.state === 'ready' && !this.closed;
  }

  private openStream(): void {
    this.state = 'header';
    this.writeHeader({ from: this.local, to: this.remote });
  }

  protected writeOpeningForError(): void {
    this.writeHeader({ from: this.local, to: this.remote });
  }

  private inspectPeer(): void {
    this.peerCertificate = this.o.trust.inspect(this.socket as tls.TLSSocket);
  }

  /** Gives up on the stream: its stanzas bounce with `condition`. */
  private fail(condition: StanzaErrorCondition, why: string, streamError?: StreamError): void {
    this.log.info('outgoing stream failed', { local: this.local, remote: this.remote, why });
    this.settle.reject(new SetupError(condition, why));
    this.close(streamError);
  }

  protected onHeader(h: StreamHeader): void {
    if (h.ns !== NS_STREAM || h.contentNs !== NS_SERVER) {
      return this.fail('remote-server-not-found', 'the peer did not open a server stream', new StreamError('invalid-namespace'));
    }
    if (this.state !== 'header') return this.fail('remote-server-not-found', 'unexpected stream header', new StreamError('bad-format'));
    this.streamId = h.attrs.id ?? '';
    this.state = 'features';
  }

  protected onElement(el: Element): void {
    const ns = el.attrs.xmlns;
    if (this.state === 'features' && el.name === 'features' && ns === NS_STREAM) return this.onFeatures(el);
    if (this.state === 'starttls' && ns === NS_TLS) {
      if (el.name === 'proceed') return this.startTls();
      return this.fail('remote-server-not-found', 'the peer refused STARTTLS');
    }
    if (this.state === 'sasl' && ns === NS_SASL) {
      if (el.name === 'success') {
        this.authenticated = true;
        this.auth = 'external';
        this.restartStream();
        return this.openStream();
      }
      // XEP-0178 §3: after a failed EXTERNAL the initiating server may still try dialback.
      this.log.info('SASL EXTERNAL refused by the peer', { remote: this.remote });
      this.state = 'features';
      return this.authenticate(undefined);
    }
    if (ns === NS_DIALBACK && el.name === 'result' && this.state === 'dialback') return this.onDialbackResult(el);
    if (ns === NS_DIALBACK && el.name === 'verify' && this.state === 'verify') return this.onVerifyAnswer(el);
    // Server streams carry stanzas one way; anything else on ours is ignored.
    this.log.debug('ignoring element on an outgoing stream', { name: el.name, ns });
  }

  private onFeatures(features: Element): void {
    if (!this.secure) {
      if (features.getChild('starttls', NS_TLS)) {
        this.state = 'starttls';
        this.sendElement(xml('starttls', { xmlns: NS_TLS }));
        return;
      }
      // Plaintext server streams are never allowed.
      return this.fail('remote-server-not-found', 'the peer does not offer TLS', new StreamError('policy-violation', 'TLS is required'));
    }
    if (this.o.verify) {
      const v = this.o.verify;
      this.state = 'verify';
      this.sendElement(xml('db:verify', { from: v.receiving, to: v.originating, id: v.streamId }, v.key));
      return;
    }
    if (this.authenticated) {
      this.state = 'ready';
      this.touch();
      this.settle.resolve('ready');
      return;
    }
    this.authenticate(features);
  }

  /** EXTERNAL when offered (once), else dialback when allowed. */
  private authenticate(features: Element | undefined): void {
    const remoteValid = certificateValidFor(this.peerCertificate, this.remote);
    if (this.o.policy === 'certificate' && !remoteValid) {
      return this.fail('remote-server-not-found', 'policy requires a valid certificate and the peer\'s does not validate');
    }
    const mechanisms = features?.getChild('mechanisms', NS_SASL)?.getChildren('mechanism').map((m) => m.text()) ?? [];
    if (!this.triedExternal && mechanisms.includes('EXTERNAL')) {
      this.triedExternal = true;
      this.state = 'sasl';
      // RFC 6120 §6.4.2: the literal "=" is an empty response (no authzid), so the identity is
      // the one in our certificate, this stream's from (XEP-0178 §3). Base64 of "=" would be an
      // authzid of "=", which Prosody rightly refuses.
      this.sendElement(xml('auth', { xmlns: NS_SASL, mechanism: 'EXTERNAL' }, '='));
      return;
    }
    if (this.o.policy === 'certificate') {
      return this.fail('remote-server-not-found', 'policy requires SASL EXTERNAL and the peer does not accept our certificate');
    }
    if (!this.streamId) return this.fail('remote-server-not-found', 'the peer gave no stream id for dialback');
    this.state = 'dialback';
    const key = dialbackKey(this.o.secret, this.remote, this.local, this.streamId);
    this.sendElement(xml('db:result', { from: this.local, to: this.remote }, key));
  }

  private onDialbackResult(el: Element): void {
    if (el.attrs.from !== this.remote || el.attrs.to !== this.local) {
      this.log.debug('dialback result for another pair', { from: el.attrs.from, to: el.attrs.to });
      return;
    }
    if (el.attrs.type === 'valid') {
      this.authenticated = true;
      this.auth = 'dialback';
      this.state = 'ready';
      this.touch();
      this.settle.resolve('ready');
      return;
    }
    const condition = errorCondition(el);
    this.fail('remote-server-not-found', el.attrs.type === 'error' ? `dialback refused (${condition ?? 'error'})` : 'dialback key found invalid');
  }

  private onVerifyAnswer(el: Element): void {
    const v = this.o.verify!;
    if (el.attrs.id !== v.streamId) return;
    if (el.attrs.type === 'error') {
      // The authoritative server could not judge the key (e.g. it does not serve the domain).
      this.settle.reject(new SetupError('remote-server-not-found', `verification refused (${errorCondition(el) ?? 'error'})`));
      this.close();
      return;
    }
    const verdict = el.attrs.type === 'valid' && el.attrs.from === v.originating && el.attrs.to === v.receiving ? 'valid' : 'invalid';
    this.settle.resolve(verdict);
    this.close();
  }

  private startTls(): void {
    const secured = tls.connect({ ...tlsClientOptions(this.o.certs, this.local, this.remote), socket: this.socket });
    this.swapSocket(secured);
    secured.once('secureConnect', () => {
      this.secure = true;
      this.inspectPeer();
      this.openStream();
    });
  }
}

/** The stanza error condition inside a dialback error element, if any. */
export function errorCondition(el: Element): string | undefined {
  const error = el.getChild('error');
  if (!error) return undefined;
  for (const c of error.children) if (typeof c !== 'string' && (c as Element).name !== 'text') return (c as Element).name;
  return undefined;
}
