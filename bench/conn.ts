// The load generator's connections: an XMPP client (STARTTLS, SCRAM-SHA-1, bind, optional roster
// and presence) and an echo-server client that frames its traffic the same way, so both sides of
// every comparison pay the same client-side costs (TLS, splitting, timestamps).
import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { promisify } from 'node:util';
import { XmlSplitter, attr, childText, elementName, escapeXml, ownText } from './xml-split.js';

const pbkdf2Async = promisify(pbkdf2);

const NS_STREAM = 'http://etherx.jabber.org/streams';
const NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls';
const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
const NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind';

export const streamHeader = (to: string): string =>
  `<?xml version='1.0'?><stream:stream to='${escapeXml(to)}' version='1.0' xmlns='jabber:client' xmlns:stream='${NS_STREAM}'>`;

/**
 * SaltedPassword values by salt and iteration count. Real clients (Conversations, Dino) keep
 * them too, so a login does not redo PBKDF2. Here it matters more: 4096 rounds per login in the
 * bench process would eat CPU the server needs and make the login rate measure the generator.
 */
export class SaltedPasswordCache {
  private readonly map = new Map<string, Promise<Buffer>>();
  constructor(private readonly password: string) {}

  get(saltB64: string, iterations: number): Promise<Buffer> {
    const key = `${saltB64}/${iterations}`;
    let v = this.map.get(key);
    if (!v) {
      // On the thread pool: a cold cache must not stall the generator's event loop.
      v = pbkdf2Async(Buffer.from(this.password, 'utf8'), Buffer.from(saltB64, 'base64'), iterations, 20, 'sha1');
      this.map.set(key, v);
    }
    return v;
  }

  get size(): number {
    return this.map.size;
  }
}

export class ProtocolError extends Error {}

interface Waiter {
  pred: (xml: string) => boolean;
  resolve: (xml: string) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** A socket carrying a stream of top-level XML elements, with waits for the next matching one. */
export class Conn {
  socket: net.Socket;
  /** Set once the setup exchange is over: every element goes here instead of the inbox. */
  onElement: ((xml: string) => void) | undefined;
  onClose: (() => void) | undefined;
  closed = false;
  /** Stanzas (message, presence, iq) received while counting: XEP-0198's inbound count. */
  stanzasIn = 0;
  protected counting = false;
  private readonly splitter: XmlSplitter;
  private inbox: string[] = [];
  private waiter: Waiter | undefined;
  private failure: Error | undefined;

  protected constructor(socket: net.Socket, private readonly timeoutMs: number) {
    this.socket = socket;
    this.splitter = new XmlSplitter({
      streamStart: () => undefined,
      element: (xml) => this.deliver(xml),
      streamEnd: () => this.fail(new ProtocolError('the peer closed the stream')),
    });
    this.attach(socket);
  }

  protected attach(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer | string) => this.splitter.write(typeof chunk === 'string' ? chunk : chunk.toString('utf8')));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => {
      this.closed = true;
      this.fail(new ProtocolError('connection closed'));
      this.onClose?.();
    });
  }

  protected detach(socket: net.Socket): void {
    socket.removeAllListeners('data');
    socket.removeAllListeners('close');
    socket.removeAllListeners('error');
  }

  protected restartStream(): void {
    this.splitter.reset();
  }

  private deliver(xml: string): void {
    if (this.counting && (xml.startsWith('<message') || xml.startsWith('<presence') || xml.startsWith('<iq'))) this.stanzasIn++;
    if (this.onElement) return this.onElement(xml);
    const w = this.waiter;
    if (w && w.pred(xml)) {
      this.waiter = undefined;
      clearTimeout(w.timer);
      w.resolve(xml);
      return;
    }
    this.inbox.push(xml);
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      clearTimeout(w.timer);
      w.reject(err);
    }
  }

  /** The next element matching pred, from what already arrived or what arrives next. */
  next(pred: (xml: string) => boolean, what: string): Promise<string> {
    const i = this.inbox.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]!);
    if (this.failure) return Promise.reject(new ProtocolError(`${what}: ${this.failure.message}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new ProtocolError(`timed out after ${this.timeoutMs} ms waiting for ${what}`));
      }, this.timeoutMs);
      this.waiter = { pred, resolve, reject: (e) => reject(new ProtocolError(`${what}: ${e.message}`)), timer };
    });
  }

  /** Hands later elements to `handler` and forgets anything unsolicited that came during setup. */
  stream(handler: (xml: string) => void): void {
    this.inbox = [];
    this.onElement = handler;
  }

  send(data: string): void {
    if (!this.closed) this.socket.write(data);
  }

  /** Ends politely; the peer's close or a 2 s timer releases the socket. */
  end(trailer = ''): void {
    if (this.closed) return;
    if (trailer) this.socket.write(trailer);
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function connectTcp(port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ProtocolError(`TCP connect to 127.0.0.1:${port} timed out`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

function secure(options: tls.ConnectionOptions, timeoutMs: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    // The certificate is the bench's own self-signed one; there is nothing to verify it against.
    const socket = tls.connect({ ...options, servername: 'localhost', rejectUnauthorized: false });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new ProtocolError('TLS handshake timed out'));
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.setEncoding('utf8');
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

export interface LoginOptions {
  port: number;
  host: string;
  user: string;
  password: string;
  keys: SaltedPasswordCache;
  /** Fetch the roster after binding (only when the server runs the roster module). */
  roster: boolean;
  /** Send initial presence after binding (and the roster, when fetched). */
  presence: boolean;
  /** Send `<enable xmlns='urn:xmpp:sm:3'/>` after binding and wait for `<enabled/>`. */
  streamManagement?: boolean;
  timeoutMs?: number;
}

export class XmppClient extends Conn {
  jid = '';

  /** Connects, secures with STARTTLS, authenticates with SCRAM-SHA-1 and binds a resource. */
  static async login(o: LoginOptions): Promise<XmppClient> {
    const timeoutMs = o.timeoutMs ?? 30_000;
    const raw = await connectTcp(o.port, timeoutMs);
    const c = new XmppClient(raw, timeoutMs);
    try {
      await c.negotiate(o);
      return c;
    } catch (err) {
      c.destroy();
      throw err;
    }
  }

  private async features(host: string): Promise<string> {
    this.send(streamHeader(host));
    return this.next((x) => elementName(x) === 'stream:features', 'stream features');
  }

  private async negotiate(o: LoginOptions): Promise<void> {
    const pre = await this.features(o.host);
    if (!pre.includes(NS_TLS)) throw new ProtocolError('the server offers no STARTTLS');
    this.send(`<starttls xmlns='${NS_TLS}'/>`);
    const proceed = await this.next((x) => attr(x, 'xmlns') === NS_TLS, 'STARTTLS proceed');
    if (elementName(proceed) !== 'proceed') throw new ProtocolError(`STARTTLS refused: ${proceed}`);
    const raw = this.socket;
    this.detach(raw);
    this.socket = await secure({ socket: raw }, o.timeoutMs ?? 30_000);
    this.restartStream();
    this.attach(this.socket);

    const mechs = await this.features(o.host);
    if (!mechs.includes('>SCRAM-SHA-1<')) throw new ProtocolError(`SCRAM-SHA-1 not offered: ${mechs}`);
    await this.scramSha1(o);
    this.restartStream();
    const post = await this.features(o.host);
    if (!post.includes(NS_BIND)) throw new ProtocolError(`no resource binding offered: ${post}`);

    this.send(`<iq type='set' id='bind1'><bind xmlns='${NS_BIND}'/></iq>`);
    const bound = await this.next((x) => elementName(x) === 'iq' && attr(x, 'id') === 'bind1', 'bind result');
    const jid = attr(bound, 'type') === 'result' ? childText(bound, 'jid') : undefined;
    if (!jid) throw new ProtocolError(`bind failed: ${bound}`);
    this.jid = jid;

    if (o.streamManagement) {
      this.send("<enable xmlns='urn:xmpp:sm:3'/>");
      const answer = await this.next((x) => attr(x, 'xmlns') === 'urn:xmpp:sm:3', 'stream management enabled');
      if (elementName(answer) !== 'enabled') throw new ProtocolError(`stream management refused: ${answer}`);
      // XEP-0198 §4: the server counts what it sends from <enabled/> on; so does the client.
      this.counting = true;
      this.stanzasIn = 0;
    }
    if (o.roster) {
      this.send("<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>");
      const roster = await this.next((x) => elementName(x) === 'iq' && attr(x, 'id') === 'roster1', 'roster result');
      if (attr(roster, 'type') !== 'result') throw new ProtocolError(`roster get failed: ${roster}`);
    }
    if (o.presence) this.send('<presence/>');
  }

  /** RFC 5802 client side, written for the bench (the server's code is not reused). */
  private async scramSha1(o: LoginOptions): Promise<void> {
    const nonce = randomBytes(18).toString('base64');
    const name = o.user.replace(/=/g, '=3D').replace(/,/g, '=2C');
    const clientFirstBare = `n=${name},r=${nonce}`;
    this.send(`<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-1'>${Buffer.from(`n,,${clientFirstBare}`).toString('base64')}</auth>`);
    const challenge = await this.next((x) => attr(x, 'xmlns') === NS_SASL, 'SASL challenge');
    if (elementName(challenge) !== 'challenge') throw new ProtocolError(`SASL refused: ${challenge}`);
    const serverFirst = Buffer.from(ownText(challenge), 'base64').toString('utf8');
    const fields = new Map(serverFirst.split(',').map((kv) => [kv.slice(0, 1), kv.slice(2)] as const));
    const r = fields.get('r');
    const s = fields.get('s');
    const i = Number(fields.get('i'));
    if (!r?.startsWith(nonce) || !s || !Number.isSafeInteger(i)) throw new ProtocolError(`bad server-first message: ${serverFirst}`);
    const salted = await o.keys.get(s, i);
    const clientKey = createHmac('sha1', salted).update('Client Key').digest();
    const storedKey = createHash('sha1').update(clientKey).digest();
    const withoutProof = `c=biws,r=${r}`;
    const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
    const signature = createHmac('sha1', storedKey).update(authMessage).digest();
    for (let k = 0; k < clientKey.length; k++) clientKey[k]! ^= signature[k]!;
    this.send(`<response xmlns='${NS_SASL}'>${Buffer.from(`${withoutProof},p=${clientKey.toString('base64')}`).toString('base64')}</response>`);
    const outcome = await this.next((x) => attr(x, 'xmlns') === NS_SASL, 'SASL outcome');
    if (elementName(outcome) !== 'success') throw new ProtocolError(`authentication failed for ${o.user}: ${outcome}`);
    // The server proves it knows the credential too; a wrong proof means a broken exchange.
    const serverKey = createHmac('sha1', salted).update('Server Key').digest();
    const expected = `v=${createHmac('sha1', serverKey).update(authMessage).digest('base64')}`;
    if (Buffer.from(ownText(outcome), 'base64').toString('utf8') !== expected) throw new ProtocolError('the server signature does not verify');
  }

  /** The `h` to acknowledge with (stream management enabled at login). */
  get stanzasSinceEnable(): number {
    return this.stanzasIn;
  }

  close(): void {
    this.end('</stream:stream>');
  }
}

/**
 * A direct-TLS client of the echo server. It opens a pseudo stream root first so the echoed
 * bytes go through the same splitter as XMPP traffic does.
 */
export class EchoClient extends Conn {
  static async connect(port: number, timeoutMs = 30_000): Promise<EchoClient> {
    const socket = await secure({ port, host: '127.0.0.1', noDelay: true } as tls.ConnectionOptions, timeoutMs);
    const c = new EchoClient(socket, timeoutMs);
    c.send('<stream>');
    return c;
  }

  /** Sends a small element and waits for it to come back: proves the connection carries data. */
  async roundTrip(): Promise<void> {
    const id = randomBytes(4).toString('hex');
    this.send(`<hello id='${id}'/>`);
    await this.next((x) => attr(x, 'id') === id, 'echo');
  }

  close(): void {
    this.end('</stream>');
  }
}

/** One TLS handshake against the echo server, then a close: the baseline of a login. */
export async function tlsHandshake(port: number, timeoutMs = 30_000): Promise<void> {
  const socket = await secure({ port, host: '127.0.0.1', noDelay: true } as tls.ConnectionOptions, timeoutMs);
  socket.on('error', () => undefined);
  socket.end();
  setTimeout(() => socket.destroy(), 2000).unref();
}
