// A hand-driven server-to-server peer for protocol tests: opens a jabber:server stream to a
// Parley s2s listener, does STARTTLS with a client certificate, and can then authenticate with
// SASL EXTERNAL and send whatever a misbehaving server would (spoofed addresses, ...).
import net from 'node:net';
import tls from 'node:tls';
import type { Element } from 'ltx';
import { StreamParser } from '../../lib/xml/stream-parser.js';

export const NS_STREAM = 'http://etherx.jabber.org/streams';

export class RawPeer {
  private socket: net.Socket;
  private readonly parser: StreamParser;
  private readonly inbox: Element[] = [];
  private waiters: Array<{ pred: (el: Element) => boolean; resolve: (el: Element) => void }> = [];
  header: Record<string, string> = {};
  closed = false;

  private constructor(socket: net.Socket, private readonly from: string, private readonly to: string) {
    this.socket = socket;
    this.parser = new StreamParser({
      streamStart: (h) => {
        this.header = h.attrs;
      },
      stanza: (el) => this.push(el),
      streamEnd: () => undefined,
      error: () => undefined,
    });
    this.attach(socket);
  }

  static connect(port: number, from: string, to: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RawPeer(socket, from, to)));
      socket.once('error', reject);
    });
  }

  private attach(socket: net.Socket): void {
    socket.on('data', (d: Buffer) => this.parser.write(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
    });
  }

  private push(el: Element): void {
    const i = this.waiters.findIndex((w) => w.pred(el));
    if (i === -1) this.inbox.push(el);
    else this.waiters.splice(i, 1)[0]!.resolve(el);
  }

  send(data: string): void {
    this.socket.write(data);
  }

  next(pred: (el: Element) => boolean, timeoutMs = 5000): Promise<Element> {
    const i = this.inbox.findIndex(pred);
    if (i !== -1) return Promise.resolve(this.inbox.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const waiter = { pred, resolve: (el: Element) => { clearTimeout(timer); resolve(el); } };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out; inbox: ${this.inbox.map(String).join(' | ')}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Sends a stream header and waits for the features. */
  open(): Promise<Element> {
    this.send(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='${NS_STREAM}' xmlns:db='jabber:server:dialback' from='${this.from}' to='${this.to}' version='1.0'>`);
    return this.next((el) => el.name === 'features');
  }

  /** STARTTLS presenting `certPem`/`keyPem` (if given), then the new stream's features. */
  async starttls(client?: { cert: string; key: string }): Promise<Element> {
    this.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await this.next((el) => el.name === 'proceed');
    const raw = this.socket;
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    const secure = tls.connect({ socket: raw, servername: this.to, rejectUnauthorized: false, ...client });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.socket = secure;
    this.parser.reset();
    this.attach(secure);
    return this.open();
  }

  /**
   * SASL EXTERNAL: with no authzid ("=", the stream's from) or the given one; resolves with
   * success or failure (restarting the stream on success).
   */
  async external(authzid?: string): Promise<Element> {
    const response = authzid === undefined ? '=' : Buffer.from(authzid).toString('base64');
    this.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>${response}</auth>`);
    const answer = await this.next((el) => el.name === 'success' || el.name === 'failure');
    if (answer.name === 'success') {
      this.parser.reset();
      await this.open();
    }
    return answer;
  }

  /** The condition of the stream error the server sends. */
  async streamError(timeoutMs = 5000): Promise<string> {
    const el = await this.next((e) => e.name === 'error' && e.attrs.xmlns === NS_STREAM, timeoutMs);
    const cond = el.children.find((c): c is Element => typeof c !== 'string' && c.name !== 'text');
    return cond?.name ?? '';
  }

  destroy(): void {
    this.socket.destroy();
  }
}
