// The plugin contract (DESIGN §3): a plugin only registers; the loader records every
// registration and undoes it on unload, so plugins write no teardown code.
import type { Element } from 'ltx';
import type { Jid } from '../jid.js';
import type { Logger } from '../log.js';
import type { Schema } from '../config/schema.js';
import type { ArchiveStore, Json, KeyValStore, MapStore } from '../storage/types.js';
import type { ClientSession } from '../session/types.js';
import type { HttpHandler, MountOptions, UpgradeHandler } from '../net/http.js';
import type { HookHandler } from '../hooks.js';
import type { ServerApi } from '../server-api.js';

export interface XepDeclaration {
  xep: number;
  version?: string;
  status: 'complete' | 'partial';
  note?: string;
}

export interface PluginDefinition<O = unknown> {
  /** Also the plugin's key under `modules:` in the config (snake_case). */
  name: string;
  /** Plugins that must be enabled on the same host; checked at boot. */
  requires?: readonly string[];
  /** Plugins used when enabled; loaded first when present. */
  optional?: readonly string[];
  xeps?: readonly XepDeclaration[];
  /** Options schema with defaults and docs; validated against the config at boot. */
  options?: Schema<O>;
  setup(ctx: PluginContext<O>): void | Promise<void>;
}

export type IqTarget = 'host' | 'bare' | 'full';

export interface IqOptions {
  /** Which addresses the handler serves (default: the host). */
  to?: readonly IqTarget[];
  /** Hook priority: a higher one answers first (default 0). */
  priority?: number;
}

export interface IqRequest {
  stanza: Element;
  /** The IQ's child element. */
  payload: Element;
  type: 'get' | 'set';
  from: Jid;
  to: Jid;
  /** The client session the IQ came from, when it came from a local client. */
  session?: ClientSession;
}

/** Returns the result payload, or nothing for an empty result; throws StanzaError to refuse. */
export type IqHandler = (req: IqRequest) => Element | undefined | void | Promise<Element | undefined | void>;

/** Argument of routing events (`message/bare`, `pre-presence/full`, ...). */
export interface StanzaEvent {
  stanza: Element;
  from: Jid;
  to: Jid;
  /** The local client session the stanza came from, if any. */
  session?: ClientSession;
  /**
   * Set while a client's message is handled: storage writes made for it may pass this as
   * WriteOptions.durable instead of waiting for their commit, and the session counts the message
   * as handled (stream management `h`) only once every commit handed here has landed. So a client
   * can send its next message while this one commits, and an acknowledged message is stored.
   * Only for writes the handler awaits; work it leaves running must not use it.
   */
  durable?: (commit: Promise<void>) => void;
}

/**
 * Handles every stanza addressed to a service domain (e.g. conference.example.com) and its JIDs.
 * Throwing a StanzaError bounces the stanza with it.
 */
export type ComponentHandler = (ev: StanzaEvent) => void | Promise<void>;

export interface DiscoIdentity {
  category: string;
  type: string;
  name?: string;
}

/** Called when a stream-level element that is not a stanza arrives (e.g. `<enable xmlns='urn:xmpp:sm:3'/>`). */
export type ElementHandler = (session: ClientSession, el: Element) => void | Promise<void>;

/**
 * Sees every stanza about to be delivered to a client session; returns true when it took the
 * stanza (held or dropped it), so it is not written now. Synchronous: it runs on the hot path.
 */
export type OutgoingFilter = (session: ClientSession, stanza: Element) => boolean;

/** Argument of `message/delivered`: which local sessions got a routed message. */
export interface DeliveredEvent extends StanzaEvent {
  sessions: ClientSession[];
}

/** Adds children to `<stream:features/>`; `stage` says where in the negotiation the stream is. */
export type FeatureProvider = (session: ClientSession, stage: 'pre-auth' | 'post-auth') => Element | Element[] | undefined;

export interface PluginContext<O = unknown> {
  readonly name: string;
  readonly host: string;
  readonly options: O;
  readonly log: Logger;
  readonly server: ServerApi;
  hook(event: string, fn: HookHandler, priority?: number): void;
  /** Runs every handler of an event on this host (notifications). */
  emit(event: string, arg: unknown): Promise<void>;
  /** Runs handlers until one returns a value, and returns it. */
  run<R = unknown>(event: string, arg: unknown): Promise<R | undefined>;
  iq: {
    get(xmlns: string, name: string, handler: IqHandler, opts?: IqOptions): void;
    set(xmlns: string, name: string, handler: IqHandler, opts?: IqOptions): void;
  };
  /** A disco#info feature on the host (default) or on every account's bare JID. */
  feature(ns: string, where?: 'host' | 'account'): void;
  identity(identity: DiscoIdentity, where?: 'host' | 'account'): void;
  /** A disco#items entry of the host (services such as conference.example.com). */
  discoItem(item: { jid: string; name?: string; node?: string }): void;
  /** An XEP-0128 extension form on the host's disco#info. */
  discoExtension(form: () => Element): void;
  store: {
    keyval<V extends Json = Json>(name: string): KeyValStore<V>;
    map<V extends Json = Json>(name: string): MapStore<V>;
    archive<V extends Json = Json>(name: string): ArchiveStore<V>;
  };
  /** Shares a service with other plugins of the host. */
  provide(name: string, service: unknown): void;
  use<T>(name: string): T | undefined;
  /** Repeats fn every `ms` until unload; errors are logged. */
  every(ms: number, fn: () => unknown): void;
  onClose(fn: () => unknown): void;
  /** Mounts an HTTP handler on the shared listener(s). */
  http(prefix: string, handler: HttpHandler, opts?: MountOptions): void;
  /** Mounts an HTTP upgrade (WebSocket) handler on the shared listener(s). */
  httpUpgrade(prefix: string, handler: UpgradeHandler): void;
  c2s: {
    element(xmlns: string, name: string, handler: ElementHandler): void;
    feature(provider: FeatureProvider): void;
    outgoing(filter: OutgoingFilter): void;
  };
  /**
   * Serves a whole domain inside the server (MUC, upload, ...): every stanza to it or its JIDs
   * goes to the handler. The domain must not be a configured host or another service's.
   */
  component(domain: string, handler: ComponentHandler): void;
  /** Routes a stanza as the server (from must be set). */
  route(stanza: Element): Promise<void>;
}

export function definePlugin<O>(def: PluginDefinition<O>): PluginDefinition<O> {
  return def;
}
