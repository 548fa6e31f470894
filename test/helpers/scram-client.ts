// An independent SCRAM client (RFC 5802, RFC 7677) with channel binding (RFC 5929, RFC 9266) for
// tests: written against the RFCs, not against the server's code, so a shared misunderstanding
// cannot make both sides agree. `tlsLogin` drives one login over a real TLS connection (STARTTLS or
// Direct TLS) and computes the binding data from its own side of the connection.
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type { Element } from 'ltx';
import { StreamParser } from '../../lib/xml/stream-parser.js';
import { startTestServer, type TestServer, type TestServerOptions } from './server.js';

type Algo = 'sha1' | 'sha256' | 'sha512';

export const SCRAM_ALGOS: Record<string, Algo> = { 'SCRAM-SHA-1': 'sha1', 'SCRAM-SHA-256': 'sha256', 'SCRAM-SHA-512': 'sha512' };

export interface ScramClientOptions {
  /** GS2 flag for a mechanism without -PLUS: `n` (cannot bind, the default) or `y` (could, saw no -PLUS). */
  flag?: 'n' | 'y';
  /** For -PLUS: the channel binding type named in `p=`. */
  cbType?: string;
  /** For -PLUS: the binding data sent in `c=`. */
  cbData?: Buffer;
}

export class ScramClient {
  private readonly nonce = randomBytes(18).toString('base64');
  private clientFirstBare = '';
  private gs2Header = '';
  private serverSignature = Buffer.alloc(0);

  constructor(
    private readonly mechanism: string,
    private readonly user: string,
    private readonly password: string,
    private readonly options: ScramClientOptions = {},
  ) {}

  private get plus(): boolean {
    return this.mechanism.endsWith('-PLUS');
  }

  private get algo(): Algo {
    const algo = SCRAM_ALGOS[this.plus ? this.mechanism.slice(0, -5) : this.mechanism];
    if (!algo) throw new Error(`not a SCRAM mechanism: ${this.mechanism}`);
    return algo;
  }

  first(): string {
    const name = this.user.replace(/=/g, '=3D').replace(/,/g, '=2C');
    this.clientFirstBare = `n=${name},r=${this.nonce}`;
    this.gs2Header = this.plus ? `p=${this.options.cbType ?? 'tls-exporter'},,` : `${this.options.flag ?? 'n'},,`;
    return Buffer.from(`${this.gs2Header}${this.clientFirstBare}`).toString('base64');
  }

  final(challengeB64: string): string {
    const serverFirst = Buffer.from(challengeB64, 'base64').toString();
    const attrs = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
    if (!attrs.r?.startsWith(this.nonce)) throw new Error('server nonce does not extend ours');
    const salted = pbkdf2Sync(this.password, Buffer.from(attrs.s!, 'base64'), Number(attrs.i), createHash(this.algo).digest().length, this.algo);
    const clientKey = createHmac(this.algo, salted).update('Client Key').digest();
    const storedKey = createHash(this.algo).update(clientKey).digest();
    // c= is the GS2 header, followed by the binding data only when binding (RFC 5802 §7).
    const cbind = Buffer.concat([Buffer.from(this.gs2Header), this.plus ? this.options.cbData ?? Buffer.alloc(0) : Buffer.alloc(0)]);
    const finalNoProof = `c=${cbind.toString('base64')},r=${attrs.r}`;
    const authMessage = `${this.clientFirstBare},${serverFirst},${finalNoProof}`;
    const signature = createHmac(this.algo, storedKey).update(authMessage).digest();
    const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!));
    const serverKey = createHmac(this.algo, salted).update('Server Key').digest();
    this.serverSignature = createHmac(this.algo, serverKey).update(authMessage).digest();
    return Buffer.from(`${finalNoProof},p=${proof.toString('base64')}`).toString('base64');
  }

  /** Checks the server's proof of knowing the credentials (server-final `v=`). */
  verify(successB64: string): boolean {
    const text = Buffer.from(successB64, 'base64').toString();
    return text === `v=${this.serverSignature.toString('base64')}`;
  }
}

// ---------- one login over TLS ----------

export interface TlsLoginOptions {
  port: number;
  /** Stream `to` and TLS server name (SNI). */
  host?: string;
  /** Direct TLS (XEP-0368) instead of STARTTLS. */
  directTls?: boolean;
  /** Source address on the loopback network (127.0.0.2, ...), to act as another client address. */
  localAddress?: string;
  /** Highest TLS version the client allows (e.g. TLSv1.2 to see what such clients get). */
  maxVersion?: tls.SecureVersion;
  mechanism: string;
  user: string;
  password: string;
  flag?: 'n' | 'y';
  /** For -PLUS: the binding type; its data comes from this side of the connection. */
  cbType?: string;
  /** For tls-server-end-point: the hash of the server certificate's signature (RFC 5929 §4.1). */
  cbHash?: string;
  /** Send this instead of the real binding data (a client on another channel). */
  cbData?: Buffer;
}

export interface TlsLoginOutcome {
  ok: boolean;
  /** Failure condition, when not ok. */
  condition?: string;
  text?: string;
  /** The server proved it knows the credentials (SCRAM only). */
  verified?: boolean;
  /** Mechanisms and XEP-0440 channel binding types in the stream features. */
  mechanisms: string[];
  cbTypes: string[];
  protocol: string | null;
  alpn: string | false;
  /** The certificate the server presented (DER). */
  peerCert: Buffer;
}

/** A socket with an element queue on top. */
class Conn {
  socket: net.Socket;
  private readonly parser: StreamParser;
  private readonly inbox: Element[] = [];
  private waiter: ((el: Element) => void) | undefined;

  constructor(socket: net.Socket) {
    this.socket = socket;
    this.parser = new StreamParser({
      streamStart: () => undefined,
      stanza: (el) => {
        if (this.waiter) {
          const w = this.waiter;
          this.waiter = undefined;
          w(el);
        } else this.inbox.push(el);
      },
      streamEnd: () => undefined,
      error: () => undefined,
    }, { maxStanzaBytes: 1 << 20, maxDepth: 100, maxTokenBytes: 1 << 20 });
    this.listen(socket);
  }

  listen(socket: net.Socket): void {
    socket.on('data', (d: Buffer) => this.parser.write(d));
    socket.on('error', () => undefined);
  }

  /** Continues on a new (TLS) socket: a fresh stream starts there. */
  upgrade(socket: net.Socket): void {
    this.socket.removeAllListeners('data');
    this.socket = socket;
    this.parser.reset();
    this.listen(socket);
  }

  send(s: string): void {
    this.socket.write(s);
  }

  next(timeoutMs = 10_000): Promise<Element> {
    const queued = this.inbox.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error('timed out waiting for the server'));
      }, timeoutMs);
      this.waiter = (el) => {
        clearTimeout(timer);
        resolve(el);
      };
    });
  }

  async open(host: string): Promise<Element> {
    this.send(`<?xml version='1.0'?><stream:stream to='${host}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`);
    const features = await this.next();
    if (features.name !== 'features') throw new Error(`expected features, got ${features.toString()}`);
    return features;
  }
}

function secureConnect(options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(options, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** The binding data of this connection as the client sees it. */
export function clientBindingData(socket: tls.TLSSocket, type: string, hash = 'sha256'): Buffer {
  if (type === 'tls-exporter') return socket.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0));
  if (type === 'tls-server-end-point') return createHash(hash).update(socket.getPeerCertificate().raw).digest();
  // RFC 5929 §3.1: the first Finished of the handshake, the client's own in a full handshake.
  if (type === 'tls-unique') return socket.isSessionReused() ? socket.getPeerFinished()! : socket.getFinished()!;
  // Anything else: data the server cannot have, so only its own refusal ends the exchange.
  return randomBytes(32);
}

export async function tlsLogin(o: TlsLoginOptions): Promise<TlsLoginOutcome> {
  const host = o.host ?? 'localhost';
  const tlsOptions: tls.ConnectionOptions = { servername: host, rejectUnauthorized: false, ALPNProtocols: ['xmpp-client'], maxVersion: o.maxVersion };
  let secure: tls.TLSSocket;
  let conn: Conn;
  const raw = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ port: o.port, host: '127.0.0.1', localAddress: o.localAddress }, () => resolve(s));
    s.once('error', reject);
  });
  if (o.directTls) {
    secure = await secureConnect({ ...tlsOptions, socket: raw });
    conn = new Conn(secure);
  } else {
    conn = new Conn(raw);
    await conn.open(host);
    conn.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    const proceed = await conn.next();
    if (proceed.name !== 'proceed') throw new Error(`STARTTLS refused: ${proceed.toString()}`);
    raw.removeAllListeners('data');
    secure = await secureConnect({ ...tlsOptions, socket: raw });
    conn.upgrade(secure);
  }
  try {
    const features = await conn.open(host);
    const mechanisms = (features.getChild('mechanisms', 'urn:ietf:params:xml:ns:xmpp-sasl')?.getChildren('mechanism') ?? []).map((m) => m.getText());
    const cbTypes = (features.getChild('sasl-channel-binding', 'urn:xmpp:sasl-cb:0')?.getChildren('channel-binding') ?? []).map((c) => String(c.attrs.type));
    const base = { mechanisms, cbTypes, protocol: secure.getProtocol(), alpn: secure.alpnProtocol ?? false, peerCert: secure.getPeerCertificate().raw };
    const failure = (el: Element): TlsLoginOutcome => {
      const cond = el.children.find((c): c is Element => typeof c !== 'string' && c.name !== 'text');
      const text = el.getChildText('text');
      return { ...base, ok: false, condition: cond?.name, ...(text !== null ? { text } : {}) };
    };

    if (o.mechanism === 'PLAIN') {
      conn.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${o.user}\0${o.password}`).toString('base64')}</auth>`);
      const answer = await conn.next();
      return answer.name === 'success' ? { ...base, ok: true } : failure(answer);
    }
    const cbData = o.cbType ? o.cbData ?? clientBindingData(secure, o.cbType, o.cbHash) : undefined;
    const scram = new ScramClient(o.mechanism, o.user, o.password, { flag: o.flag, cbType: o.cbType, cbData });
    conn.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='${o.mechanism}'>${scram.first()}</auth>`);
    const challenge = await conn.next();
    if (challenge.name !== 'challenge') return failure(challenge);
    conn.send(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${scram.final(challenge.getText())}</response>`);
    const outcome = await conn.next();
    if (outcome.name !== 'success') return failure(outcome);
    return { ...base, ok: true, verified: scram.verify(outcome.getText()) };
  } finally {
    secure.destroy();
  }
}

// ---------- a test server with its own `auth:` settings ----------

/** Starts a test server whose `auth:` section gets these extra lines (indented by two spaces). */
export function startServerWithAuth(authLines: string, o: TestServerOptions = {}): Promise<TestServer> {
  return startTestServer({ ...o, auth: authLines });
}
