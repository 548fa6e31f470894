// External components (XEP-0114) as a server-wide service: which domains may connect, their
// streams, and what the router sees of them.
//
// Every configured domain gets a router handler at boot, connected or not. While its component
// is connected, the handler writes stanzas to the component's stream; while it is not, stanzas
// bounce at once with service-unavailable. Without that handler the router would take the
// domain for a remote one and try federation, which cannot reach a component.
//
// One stream per domain: a second connection that authenticates for a connected domain is
// refused with `conflict` and the first stays (see README, "External components").
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Element } from 'ltx';
import { BootError, StanzaError, StreamError } from '../errors.js';
import type { Logger } from '../log.js';
import type { CertStore } from '../net/certs.js';
import type { ComponentHandler } from '../plugin/types.js';
import type { XmlLimits } from '../xml/stream-parser.js';
import type { ComponentConfig, ComponentsConfig } from './config.js';
import { ComponentSession, type ComponentSocket } from './session.js';

export interface ComponentServiceDeps {
  log: Logger;
  /** Registers a domain with the router (Server.registerComponent); throws if it is taken. */
  registerDomain(domain: string, handler: ComponentHandler): () => void;
  route(stanza: Element): Promise<void>;
  certs: CertStore;
  /** Limits of the current configuration, read for each new connection. */
  settings(): {
    xmlLimits: XmlLimits;
    handshakeTimeoutMs: number;
    pingIntervalMs: number;
    sendQueueBytes: number;
    fallbackDomain: string;
  };
}

interface DomainEntry {
  config: ComponentConfig;
  unregister: () => void;
  session: ComponentSession | undefined;
  /** Stanzas from and to the component since the server started. */
  stanzasIn: number;
  stanzasOut: number;
}

export class ComponentService {
  private readonly domains = new Map<string, DomainEntry>();
  /** Every open stream, authenticated or not, so shutdown can close them all. */
  private readonly streams = new Set<ComponentSession>();
  private readonly log: Logger;

  constructor(private readonly deps: ComponentServiceDeps) {
    this.log = deps.log.child({ component: 'components' });
  }

  /** Registers the configured domains; a domain a module already serves stops the boot. */
  start(components: ComponentsConfig): void {
    for (const [domain, config] of Object.entries(components)) {
      try {
        this.add(domain, config);
      } catch (err) {
        throw new BootError('CONFIG_INVALID', `components.${domain}: ${(err as Error).message}`, { cause: err });
      }
    }
  }

  /**
   * Applies a new `components:` record: new domains can connect, changed secrets and rates count
   * for the next connection, and a removed domain's stream is closed. Returns what changed.
   */
  reload(components: ComponentsConfig): string[] {
    const changes: string[] = [];
    for (const [domain, entry] of [...this.domains]) {
      if (Object.hasOwn(components, domain)) continue;
      entry.session?.close(new StreamError('host-gone', 'this component was removed from the configuration'));
      entry.unregister();
      this.domains.delete(domain);
      changes.push(`component ${domain} removed`);
    }
    for (const [domain, config] of Object.entries(components)) {
      const entry = this.domains.get(domain);
      if (entry) {
        if (JSON.stringify(entry.config) !== JSON.stringify(config)) changes.push(`component ${domain} changed`);
        entry.config = config;
        continue;
      }
      try {
        this.add(domain, config);
        changes.push(`component ${domain} added`);
      } catch (err) {
        this.log.error('component not added', { domain, error: (err as Error).message });
        changes.push(`component ${domain} not added: ${(err as Error).message}`);
      }
    }
    return changes;
  }

  /** Runs a component stream on a connection from a component listener. */
  accept(socket: Socket, directTls: boolean): void {
    let stream: ComponentSocket = socket;
    if (directTls) {
      const secured = new TLSSocket(socket, { isServer: true, ...this.deps.certs.serverOptions() });
      secured.on('error', () => secured.destroy());
      stream = secured;
    }
    const session: ComponentSession = new ComponentSession(stream, {
      log: this.log,
      lookup: (domain) => this.domains.get(domain)?.config,
      claim: (domain, s) => this.claim(domain, s),
      release: (domain, s) => this.release(domain, s),
      route: (stanza): Promise<void> => this.routeFrom(session.domain, stanza),
    }, this.deps.settings());
    this.streams.add(session);
    stream.once('close', () => this.streams.delete(session));
  }

  /** Lines for `parleyctl stats`: one per configured component. */
  statsLines(): string[] {
    return [...this.domains].map(([domain, e]) =>
      `component ${domain}\tconnected=${e.session ? 'yes' : 'no'}\tin=${e.stanzasIn}\tout=${e.stanzasOut}`);
  }

  /** Closes every stream (system-shutdown) and unregisters every domain. */
  close(): void {
    for (const session of [...this.streams]) session.close(new StreamError('system-shutdown'));
    this.streams.clear();
    for (const entry of this.domains.values()) entry.unregister();
    this.domains.clear();
  }

  private add(domain: string, config: ComponentConfig): void {
    const entry: DomainEntry = { config, unregister: () => undefined, session: undefined, stanzasIn: 0, stanzasOut: 0 };
    entry.unregister = this.deps.registerDomain(domain, ({ stanza }) => {
      const session = entry.session;
      if (!session) {
        // A result answers nothing; an error reply to it would go to someone who asked nothing.
        if (stanza.name === 'iq' && stanza.attrs.type === 'result') return;
        throw new StanzaError('service-unavailable', `${domain} is not connected`);
      }
      session.send(stanza);
      entry.stanzasOut++;
    });
    this.domains.set(domain, entry);
  }

  private claim(domain: string, session: ComponentSession): boolean {
    const entry = this.domains.get(domain);
    if (!entry || entry.session) return false;
    entry.session = session;
    return true;
  }

  private release(domain: string, session: ComponentSession): void {
    const entry = this.domains.get(domain);
    if (entry?.session === session) entry.session = undefined;
  }

  private routeFrom(domain: string, stanza: Element): Promise<void> {
    const entry = this.domains.get(domain);
    if (entry) entry.stanzasIn++;
    return this.deps.route(stanza);
  }
}
