// A minimal XMPP client over a raw socket for protocol tests: sends exact bytes and waits for
// elements, so tests can do what real client libraries refuse to do (bad XML, spoofed from, ...).
import net from 'node:net';
import tls from 'node:tls';
import type { Element } from 'ltx';
import { StreamParser } from '../../lib/xml/stream-parser.js';

export const NS_CLIENT_HEADER = (to: string) =>
  `<?xml version='1.0'?><stream:stream to='${to}' version='1.0' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`;

export class RawClient {
  private socket: net.Socket;
  protected parser: StreamParser;
  private readonly inbox: Element[] = [];
  private waiters: Array<{ pred: (el: Element) => boolean; resolve: (el: Element) => void }> = [];
  private closeWaiters: Array<() => void> = [];
  isClosed = false;
  streamEnded = false;
  headers = 0;
  /** Attributes of the last stream header received (id, from, ...). */
  header: Record<string, string> = {};
  jid = '';

  /** Use `connect` (subclasses too: it builds an instance of the class it is called on). */
  constructor(socket: net.Socket) {
    this.socket = socket;
    this.parser = new StreamParser({
      streamStart: (h) => {
        this.headers++;
        this.header = h.attrs;
      },
      stanza: (el) => this.push(el),
      streamEnd: () => {
        this.streamEnded = true;
      },
      error: () => undefined,
    }, { maxStanzaBytes: 64 * 1024 * 1024, maxDepth: 1000, maxTokenBytes: 64 * 1024 * 1024 });
    this.attach(socket);
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (d: Buffer) => this.parser.write(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.isClosed = true;
      for (const w of this.closeWaiters) w();
      this.closeWaiters = [];
    });
  }

  static connect<T extends RawClient>(this: new (socket: net.Socket) => T, port: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new this(socket)));
      socket.once('error', reject);
    });
  }

  /** Sees every element as it arrives, before any waiter (subclasses count or answer here). */
  protected received(_el: Element): void {}

  private push(el: Element): void {
    this.received(el);
    const i = this.waiters.findIndex((w) => w.pred(el));
    if (i !== -1) {
      const [w] = this.waiters.splice(i, 1);
      w!.resolve(el);
    } else {
      this.inbox.push(el);
    }
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Waits for the next element matching pred (by default any element). */
  next(pred: (el: Element) => boolean = () => true, timeoutMs = 5000): Promise<Element> {
    const i = this.inbox.findIndex(pred);
    if (i !== -1) return Promise.resolve(this.inbox.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const waiter = { pred, resolve: (el: Element) => { clearTimeout(timer); resolve(el); } };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out waiting for an element; inbox: ${this.inbox.map(String).join(' | ')}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Waits for a stanza with this name (and id, when given). */
  nextNamed(name: string, id?: string, timeoutMs?: number): Promise<Element> {
    return this.next((el) => el.name === name && (id === undefined || el.attrs.id === id), timeoutMs);
  }

  /** True when nothing matching arrives within `ms`. */
  async nothing(pred: (el: Element) => boolean, ms = 300): Promise<boolean> {
    try {
      await this.next(pred, ms);
      return false;
    } catch {
      return true;
    }
  }

  /** Resolves with the whole stream error element. */
  streamErrorElement(timeoutMs = 5000): Promise<Element> {
    return this.next((e) => e.name === 'error' && e.attrs.xmlns === 'http://etherx.jabber.org/streams', timeoutMs);
  }

  /** Resolves with the stream error condition (or '' if the stream closed without one). */
  async streamError(timeoutMs = 5000): Promise<string> {
    const el = await this.streamErrorElement(timeoutMs);
    const cond = el.children.find((c): c is Element => typeof c !== 'string' && c.name !== 'text');
    return cond?.name ?? '';
  }

  closed(timeoutMs = 5000): Promise<void> {
    if (this.isClosed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('socket did not close')), timeoutMs);
      this.closeWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** The stream header this client opens with (a client stream; server peers override it). */
  protected streamHeader(to: string): string {
    return NS_CLIENT_HEADER(to);
  }

  /** Sends a stream header and waits for the features. */
  async open(to = 'localhost'): Promise<Element> {
    this.send(this.streamHeader(to));
    return this.nextNamed('features');
  }

  /**
   * `injected` is plaintext sent right behind the request (to test command injection);
   * `clientCert` is presented as the TLS client certificate (server peers).
   */
  async starttls(to = 'localhost', injected = '', clientCert?: { cert: string; key: string }): Promise<Element> {
    this.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" + injected);
    await this.nextNamed('proceed');
    const raw = this.socket;
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    const secure = tls.connect({ socket: raw, servername: to, rejectUnauthorized: false, ...clientCert });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.socket = secure;
    this.parser.reset();
    this.attach(secure);
    return this.open(to);
  }

  async authPlain(user: string, password: string, to = 'localhost'): Promise<Element> {
    const payload = Buffer.from(`\0${user}\0${password}`).toString('base64');
    this.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${payload}</auth>`);
    const answer = await this.next((el) => el.name === 'success' || el.name === 'failure');
    if (answer.name === 'failure') return answer;
    this.parser.reset();
    return this.open(to);
  }

  async bind(resource?: string): Promise<string> {
    const res = resource ? `<resource>${resource}</resource>` : '';
    this.send(`<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>${res}</bind></iq>`);
    const reply = await this.nextNamed('iq', 'bind1');
    if (reply.attrs.type !== 'result') throw new Error(`bind failed: ${reply.toString()}`);
    this.jid = reply.getChild('bind')!.getChildText('jid')!;
    return this.jid;
  }

  /** Connects, secures, authenticates with PLAIN and binds; optionally sends initial presence. */
  static async login(port: number, user: string, password: string, o: { resource?: string; host?: string; presence?: string | false } = {}): Promise<RawClient> {
    const host = o.host ?? 'localhost';
    const c = await RawClient.connect(port);
    await c.open(host);
    await c.starttls(host);
    const f = await c.authPlain(user, password, host);
    if (f.name === 'failure') throw new Error(`login failed: ${f.toString()}`);
    await c.bind(o.resource);
    if (o.presence !== false) {
      c.send(o.presence ?? '<presence/>');
    }
    return c;
  }

  end(): void {
    if (!this.isClosed) {
      this.socket.write('</stream:stream>');
      this.socket.end();
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}
