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
  /** Stanzas sent and not yet acknowledged by the client (XEP-0198); 0 without stream management. */
  unacked: number;
}

/**
 * What became of a stanza handed to deliver() or send():
 * - 'acked': the client acknowledged it (XEP-0198); it is the client's responsibility now.
 * - 'written': written to the connection of a session without stream management, which is all
 *   that can be known there (the bytes may still be lost with the connection).
 * - 'failed': the session ended before the client acknowledged it (and was not resumed), or it
 *   had ended already. The stanza is the caller's again; it is not offered to `delivery/failure`.
 */
export type DeliveryOutcome = 'acked' | 'written' | 'failed';
export type DeliveryCallback = (outcome: DeliveryOutcome) => void;

/** Stream management settings of one session, chosen by the smacks plugin at `<enable/>`. */
export interface StreamManagementConfig {
  /** The SM-ID; given when the session may be resumed. */
  id?: string;
  /** How long a session whose connection is lost waits to be resumed; 0 = not resumable. */
  resumeTimeoutMs: number;
  /** Unacknowledged stanzas allowed; one more ends the session with resource-constraint. */
  maxUnacked: number;
  /** An `<r/>` is sent once this many stanzas went out since the last one. */
  requestEvery: number;
  /** ...or this long after the first stanza not covered by a request (0 = only by count). */
  requestDelayMs: number;
  /** An `<r/>` unanswered this long means the connection is dead (0 = wait forever). */
  ackTimeoutMs: number;
}

/** What others may read of a session's stream management. */
export interface StreamManagementInfo {
  readonly id: string | undefined;
  readonly resumeTimeoutMs: number;
  /** `h` of the stanzas handled from the client. */
  readonly handled: number;
  /** Stanzas sent and not acknowledged yet. */
  readonly unacked: number;
  /** Unacknowledged stanzas allowed before the session ends (plugins sending in bulk stay below). */
  readonly maxUnacked: number;
}

/** Argument of `delivery/failure`: an unacknowledged stanza of a session that ended unresumed. */
export interface DeliveryFailureEvent {
  session: ClientSession;
  stanza: Element;
  /** When the stanza was first handed to the session. */
  sentAt: number;
}

export interface ClientSession {
  readonly id: string;
  /** The bound full JID; undefined before resource binding. */
  readonly jid: Jid | undefined;
  readonly host: string;
  readonly secure: boolean;
  /** The client's IP address, for per-address limits. */
  readonly remoteAddress: string | undefined;
  readonly log: Logger;
  /** The authenticated account's bare JID (set after SASL, before binding). */
  readonly account: string | undefined;
  /** True once the client sent initial presence and until it sends unavailable (RFC 6121 §4.2). */
  available: boolean;
  /** Presence priority (-128..127); negative: never gets bare-JID messages (RFC 6121 §8.5.2). */
  priority: number;
  /** The last broadcast presence, as the client sent it (with from stamped). */
  presence: Element | undefined;
  /** Per-plugin session state (e.g. roster requested, carbons enabled), keyed by plugin name. */
  readonly data: Map<string, unknown>;
  /**
   * True while the connection is lost and the session waits to be resumed (XEP-0198): it stays
   * bound and available, and what it is sent is queued for the resumed stream.
   */
  readonly hibernating: boolean;
  /** Stream management state, once the client enabled it. */
  readonly streamManagement: StreamManagementInfo | undefined;
  /**
   * Hands a stanza to the client through the host's outgoing filters (e.g. CSI may hold it).
   * `onOutcome` is told what became of it (see DeliveryOutcome).
   */
  deliver(stanza: Element, onOutcome?: DeliveryCallback): void;
  /** Writes a stanza to the client now, bypassing the outgoing filters. */
  send(stanza: Element, onOutcome?: DeliveryCallback): void;
  /** Writes a non-stanza element (stream management, CSI answers). */
  sendElement(el: Element): void;
  stats(): SessionStats;
  /** Ends the stream, with a stream error when given. */
  close(error?: StreamError): void;
  /** Starts counting and queueing stanzas (XEP-0198 `<enable/>`); absent where not supported. */
  enableStreamManagement?(config: StreamManagementConfig): void;
  /**
   * Resumes this session on the stream of `from` (authenticated, not bound), whose client sent
   * `<resume h=…/>`: takes over its connection, answers `<resumed/>` and sends again what `h`
   * does not cover. Resolves false when this session can no longer be resumed.
   */
  resume?(from: ClientSession, h: number): Promise<boolean>;
}
