// What the router and plugins may see of a client session (c2s, later WebSocket and BOSH).
import type { Element } from 'ltx';
import type { Jid } from '../jid.js';
import type { StreamError } from '../errors.js';
import type { Logger } from '../log.js';

export interface SessionStats {
  connectedAt: number;
  stanzasIn: number;
  stanzasOut: number;
  /** Stanzas received and waiting to be processed (the session handles one at a time). */
  queued: number;
  /** Bytes written to the socket and not yet sent: a slow or dead client shows here first. */
  sendBuffer: number;
}

export interface ClientSession {
  readonly id: string;
  /** The bound full JID; undefined before resource binding. */
  readonly jid: Jid | undefined;
  readonly host: string;
  readonly secure: boolean;
  readonly log: Logger;
  /** True once the client sent initial presence and until it sends unavailable (RFC 6121 §4.2). */
  available: boolean;
  /** Presence priority (-128..127); negative: never gets bare-JID messages (RFC 6121 §8.5.2). */
  priority: number;
  /** The last broadcast presence, as the client sent it (with from stamped). */
  presence: Element | undefined;
  /** Per-plugin session state (e.g. roster requested, carbons enabled), keyed by plugin name. */
  readonly data: Map<string, unknown>;
  /** Hands a stanza to the client through the host's outgoing filters (e.g. CSI may hold it). */
  deliver(stanza: Element): void;
  /** Writes a stanza to the client now, bypassing the outgoing filters. */
  send(stanza: Element): void;
  /** Writes a non-stanza element (stream management, CSI answers). */
  sendElement(el: Element): void;
  stats(): SessionStats;
  /** Ends the stream, with a stream error when given. */
  close(error?: StreamError): void;
}
