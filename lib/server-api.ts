// What the server exposes to plugins: enough to route, look up sessions and accounts, and reach
// storage; never the listeners or the config file.
import type { Element } from 'ltx';
import type { Accounts } from './accounts.js';
import type { Logger } from './log.js';
import type { SessionRegistry } from './session/registry.js';
import type { ClientSession } from './session/types.js';
import type { StorageDriver } from './storage/types.js';
import type { HostContext } from './plugin/host.js';
import type { ComponentHandler } from './plugin/types.js';

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
}
