// What incoming and outgoing server streams share: the socket and its XML parser, the stream
// header (jabber:server with the dialback prefix declared, XEP-0220 §2.1), writing stanzas,
// STARTTLS's socket swap, the idle timer, and closing exactly once with the reason it ended.
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Element } from 'ltx';
import { StreamError } from '../errors.js';
import type { Logger } from '../log.js';
import { NS_SERVER, NS_STREAM } from '../xml/ns.js';
import { escapeAttr, serialize } from '../xml/serialize.js';
import { StreamParser, type StreamHeader, type XmlLimits } from '../xml/stream-parser.js';
import type { PeerCertificate } from './trust.js';

export const NS_DIALBACK = 'jabber:server:dialback';
export const NS_DIALBACK_FEATURE = 'urn:xmpp:features:dialback';

/**
 * How a stream ended: `clean` = a closing tag without error (an idle peer saying goodbye),
 * `error` = a stream error either way, `lost` = the connection died.
 */
export type EndReason = 'clean' | 'error' | 'lost';

export interface ServerStreamOptions {
  log: Logger;
  xmlLimits: Partial<XmlLimits>;
  /** Close after this long without a stanza either way; 0 = never. */
  idleTimeoutMs: number;
}

let counter = 0;

export abstract class ServerStream {
  readonly id = `s2s-${(++counter).toString(36)}-${randomBytes(3).toString('hex')}`;
  protected socket: Socket;
  protected readonly parser: StreamParser;
  protected readonly log: Logger;
  /** TLS is established (Direct TLS or after STARTTLS). */
  secure = false;
  peerCertificate: PeerCertificate | undefined;
  stanzasIn = 0;
  stanzasOut = 0;
  private ended = false;
  private headerWritten = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private socketListeners: { data(b: Buffer): void; close(): void; error(e: Error): void } | undefined;
  private readonly endCallbacks: Array<(reason: EndReason) => void> = [];

  constructor(socket: Socket, protected readonly options: ServerStreamOptions) {
    this.socket = socket;
    this.log = options.log.child({ stream: this.id });
    this.parser = new StreamParser({
      streamStart: (h) => this.onHeader(h),
      stanza: (el) => {
        if (el.name === 'error' && el.attrs.xmlns === NS_STREAM) {
          this.log.info('peer sent a stream error', { condition: firstConditionName(el) });
          this.finish('error');
          return;
        }
        this.onElement(el);
      },
      streamEnd: () => this.close(),
      error: (err) => this.close(err),
    }, options.xmlLimits);
    this.attach(socket);
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Runs once the stream is over, with how it ended. */
  onEnd(callback: (reason: EndReason) => void): void {
    if (this.ended) callback('lost');
    else this.endCallbacks.push(callback);
  }

  protected abstract onHeader(header: StreamHeader): void;
  protected abstract onElement(el: Element): void;

  protected attach(socket: Socket): void {
    const listeners = {
      data: (chunk: Buffer) => this.parser.write(chunk),
      close: () => {
        if (socket === this.socket) this.finish('lost');
      },
      error: (err: Error) => this.log.debug('socket error', { err: err.message }),
    };
    this.socketListeners = listeners;
    socket.on('data', listeners.data);
    socket.on('close', listeners.close);
    socket.on('error', listeners.error);
  }

  /** Moves the stream onto a TLS socket wrapping the current one; the peer restarts the stream. */
  protected swapSocket(next: Socket): void {
    const old = this.socket;
    const listeners = this.socketListeners;
    if (listeners) {
      old.off('data', listeners.data);
      old.off('close', listeners.close);
      old.off('error', listeners.error);
    }
    // The TCP socket now sits under TLS; its errors end the TLS socket too, and must not be
    // left without a listener (an unhandled 'error' would be thrown).
    old.on('error', () => undefined);
    this.socket = next;
    this.parser.reset();
    this.headerWritten = false;
    this.attach(next);
  }

  /** A new stream on the same connection (after TLS or SASL): a fresh parser state and header. */
  protected restartStream(): void {
    this.parser.reset();
    this.headerWritten = false;
  }

  protected writeHeader(attrs: Record<string, string | undefined>): void {
    const parts = [`xmlns='${NS_SERVER}'`, `xmlns:stream='${NS_STREAM}'`, `xmlns:db='${NS_DIALBACK}'`];
    for (const [k, v] of Object.entries(attrs)) if (v !== undefined) parts.push(`${k}='${escapeAttr(v)}'`);
    parts.push(`version='1.0'`);
    this.write(`<?xml version='1.0'?><stream:stream ${parts.join(' ')}>`);
    this.headerWritten = true;
  }

  protected get headerSent(): boolean {
    return this.headerWritten;
  }

  protected write(data: string): void {
    if (this.ended || this.socket.destroyed) return;
    this.socket.write(data);
  }

  sendElement(el: Element): void {
    this.write(serialize(el));
  }

  /** Writes a stanza; the client namespace of a local sender's copy does not apply here. */
  sendStanza(stanza: Element): void {
    if (stanza.attrs.xmlns === 'jabber:client') delete stanza.attrs.xmlns;
    this.stanzasOut++;
    this.touch();
    this.sendElement(stanza);
  }

  /** Restarts the idle timer: a stanza went one way or the other. */
  protected touch(): void {
    if (this.options.idleTimeoutMs <= 0 || this.ended) return;
    if (this.idleTimer) this.idleTimer.refresh();
    else {
      this.idleTimer = setTimeout(() => {
        this.log.debug('idle, closing');
        this.close();
      }, this.options.idleTimeoutMs);
      this.idleTimer.unref();
    }
  }

  /** Sends the error (if any) and the closing tag, then ends the connection. */
  close(error?: StreamError): void {
    if (this.ended) return;
    if (error) {
      this.log.info('closing with stream error', { condition: error.condition, text: error.text });
      if (!this.headerSent) this.writeOpeningForError();
      this.sendElement(error.toElement());
    }
    this.write('</stream:stream>');
    this.socket.end();
    // A peer that never closes its side must not keep the socket forever.
    setTimeout(() => this.socket.destroy(), 2000).unref();
    // end() flushes what was written (the error above); destroying now would drop it.
    this.finish(error ? 'error' : 'clean', false);
  }

  /** The header a stream error needs when it comes before ours (RFC 6120 §4.9.1.1). */
  protected abstract writeOpeningForError(): void;

  protected finish(reason: EndReason, destroy = true): void {
    if (this.ended) return;
    this.ended = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (destroy) this.socket.destroy();
    for (const cb of this.endCallbacks.splice(0)) {
      try {
        cb(reason);
      } catch (err) {
        this.log.error('stream end handler failed', { err });
      }
    }
  }
}

function firstConditionName(el: Element): string | undefined {
  for (const c of el.children) if (typeof c !== 'string') return (c as Element).name;
  return undefined;
}
