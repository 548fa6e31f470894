// What the server exposes to plugins: enough to route, look up sessions and accounts, and reach
// storage; never the listeners or the config file.
import type { Duplex } from 'node:stream';
import type { Element } from 'ltx';
import type { Accounts } from './accounts.js';
import type { Logger } from './log.js';
import type { SessionRegistry } from './session/registry.js';
import type { ClientSession } from './session/types.js';
import type { StorageDriver } from './storage/types.js';
import type { HostContext } from './plugin/host.js';
import type { ComponentHandler } from './plugin/types.js';

/**
 * A client stream that is not a TCP socket (WebSocket, BOSH): a Duplex carrying RFC 6120 stream
 * XML, with the parts of net.Socket a client session uses.
 */
export interface ClientStream extends Duplex {
  readonly remoteAddress: string | undefined;
  /** Calls `onTimeout` after `ms` without traffic (0 = never), like net.Socket.setTimeout. */
  setTimeout(ms: number, onTimeout?: () => void): this;
}

export interface ServerApi {
  readonly hosts: readonly string[];
  readonly sessions: SessionRegistry;
  readonly accounts: Accounts;
  readonly storage: StorageDriver;
  readonly log: Logger;
  readonly startedAt: number;
  /** The server's data directory (absolute): plugins keep their files below it. */
  readonly dataDir: string;
  /** A domain served here: a configured host or a service domain registered by a plugin. */
  isLocal(domain: string): boolean;
  host(name: string): HostContext | undefined;
  /** Registers an internal service domain; returns a remover. Throws if the domain is taken. */
  registerComponent(domain: string, handler: ComponentHandler): () => void;
  /** Routes a stanza; `from` must be set. */
  route(stanza: Element, session?: ClientSession): Promise<void>;
  /** Sends an IQ get/set as the server and resolves with the response (result or error). */
  sendIq(iq: Element, timeoutMs?: number): Promise<Element>;
  /** limits.max_stanza_size: transports size their frames by it. */
  readonly maxStanzaSize: number;
  /**
   * Runs a client session (the same code as TCP c2s) over another transport. `secure`: the
   * transport is encrypted (or trusted as such), so no STARTTLS is offered.
   */
  createClientSession(stream: ClientStream, options: { secure: boolean }): ClientSession;
}
