// A hand-driven server-to-server peer for protocol tests: opens a jabber:server stream to a
// Parley s2s listener, does STARTTLS with a client certificate, and can then authenticate with
// SASL EXTERNAL and send whatever a misbehaving server would (spoofed addresses, ...).
import type { Element } from 'ltx';
import { RawClient } from './raw-client.js';

export const NS_STREAM = 'http://etherx.jabber.org/streams';

export class RawPeer extends RawClient {
  private from = '';
  private to = '';

  /** Connects to an s2s listener as the server `from`, for a stream to `to`. */
  static async dial(port: number, from: string, to: string): Promise<RawPeer> {
    const peer = await RawPeer.connect(port);
    peer.from = from;
    peer.to = to;
    return peer;
  }

  protected override streamHeader(): string {
    return `<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='${NS_STREAM}' xmlns:db='jabber:server:dialback' from='${this.from}' to='${this.to}' version='1.0'>`;
  }

  /** STARTTLS presenting this certificate (if given), then the new stream's features. */
  secure(client?: { cert: string; key: string }): Promise<Element> {
    return this.starttls(this.to, '', client);
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
}
