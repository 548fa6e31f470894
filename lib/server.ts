// Composition root: config -> logger -> storage -> accounts -> certificates -> hosts and their
// plugins -> admin socket -> listeners. Stopping runs the same steps backwards.
import path from 'node:path';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Element } from 'ltx';
import type { Accounts } from './accounts.js';
import { openCoreServices } from './bootstrap.js';
import { createAdminCommands } from './admin/commands.js';
import { AdminCommandError, startAdminSocket } from './admin/socket.js';
import type { CoreConfig } from './config/core.js';
import { loadConfig, type LoadedConfig } from './config/load.js';
import { BootError, StanzaError, StreamError } from './errors.js';
import { Jid } from './jid.js';
import { createLogger, type Logger } from './log.js';
import { loadCertificates, type CertStore } from './net/certs.js';
import { SwitchableCertStore } from './net/cert-switch.js';
import { HttpRouter, startHttpListener } from './net/http.js';
import { listenTcp } from './net/listen.js';
import { HostContext } from './plugin/host.js';
import { loadHostPlugins, prepareHostPlugins, reconcileHostPlugins, unloadHostPlugins } from './plugin/loader.js';
import type { ComponentHandler, PluginDefinition } from './plugin/types.js';
import { Router } from './router.js';
import type { ClientStream, ServerApi } from './server-api.js';
import { c2sAuthOptions } from './auth/options.js';
import { AuthThrottle } from './auth/throttle.js';
import { C2SSession } from './session/c2s.js';
import { loadDialbackSecret } from './s2s/dialback-key.js';
import type { SrvResolver } from './s2s/resolve.js';
import { S2SService } from './s2s/service.js';
import { TrustStore } from './s2s/trust.js';
import { ComponentService } from './component/service.js';
import type { XmlLimits } from './xml/stream-parser.js';
import { SessionRegistry } from './session/registry.js';
import type { ClientSession } from './session/types.js';
import type { StorageDriver } from './storage/types.js';
import { builtinPlugins } from '../plugins/index.js';

/** What the offline plugin's service reports (kept structural: the core imports no plugin). */
interface OfflineSpoolStats {
  stored: number;
  delivered: number;
  acked: number;
  expired: number;
  removed: number;
  refused: number;
  users: number;
  messages: number;
  queues: Array<{ user: string; length: number }>;
}

export interface StartOptions {
  config: LoadedConfig;
  /** Extra plugin definitions (tests, embedders), enabled through `modules:` like built-ins. */
  plugins?: readonly PluginDefinition<any>[];
  log?: Logger;
  /** Answers SRV queries for outgoing server streams instead of the system's DNS (tests). */
  s2sResolver?: SrvResolver;
}

export interface ListenerInfo {
  module: string;
  port: number;
  close(): Promise<void>;
}

export class Server implements ServerApi {
  readonly sessions = new SessionRegistry();
  /** Failed-login counters; kept across reloads, which only change the limits. */
  private readonly authThrottle = new AuthThrottle();
  readonly startedAt = Date.now();
  readonly listeners: ListenerInfo[] = [];
  readonly router: Router;
  readonly http: HttpRouter;
  private readonly hostContexts = new Map<string, HostContext>();
  private readonly components = new Map<string, ComponentHandler>();
  /** External components (XEP-0114); their domains are registered in `components` too. */
  private readonly externalComponents: ComponentService;
  /** Server-to-server federation; created at boot. */
  private s2s: S2SService | undefined;
  /** Trust anchors for peers' certificates (s2s.ca_files and the system CAs); replaced on reload. */
  private s2sTrust: TrustStore | undefined;
  private closers: Array<() => Promise<void>> = [];
  private stopped = false;

  private catalog = new Map<string, () => Promise<PluginDefinition<any>>>();
  readonly certs: SwitchableCertStore;

  private constructor(
    private currentConfig: LoadedConfig,
    readonly log: Logger,
    readonly storage: StorageDriver,
    readonly accounts: Accounts,
    certs: CertStore,
    private readonly saslSecret: Buffer,
  ) {
    this.certs = new SwitchableCertStore(certs);
    this.router = new Router({
      log: log.child({ component: 'router' }),
      sessions: this.sessions,
      hostFor: (domain) => this.hostContexts.get(domain),
      componentFor: (domain) => this.components.get(domain),
      userExists: (local, domain) => this.accounts.exists(local, domain),
      remote: (stanza, from, to) => this.sendRemote(stanza, from, to),
    });
    this.http = new HttpRouter({ log: log.child({ component: 'http' }), maxBodySize: currentConfig.core.limits.http_max_body_size });
    this.externalComponents = new ComponentService({
      log,
      registerDomain: (domain, handler) => this.registerComponent(domain, handler),
      route: (stanza) => this.route(stanza),
      certs: this.certs,
      settings: () => ({
        xmlLimits: this.xmlLimits(),
        handshakeTimeoutMs: this.config.core.limits.component_handshake_timeout,
        pingIntervalMs: this.config.core.limits.component_ping_interval,
        sendQueueBytes: this.config.core.limits.component_send_queue,
        fallbackDomain: this.hosts[0]!,
      }),
    });
  }

  get config(): LoadedConfig {
    return this.currentConfig;
  }

  get dataDir(): string {
    return this.config.core.data_dir;
  }

  get hosts(): readonly string[] {
    return this.config.core.hosts;
  }

  static async start(options: StartOptions): Promise<Server> {
    const { config } = options;
    const core = config.core;
    const log = options.log ?? createLogger({ level: core.log.level, format: core.log.format });
    const { storage, accounts, saslSecret } = await openCoreServices(core);
    let server: Server | undefined;
    try {
      const certs = await loadCertificates({ certfiles: core.certfiles, hosts: [...core.hosts], dataDir: core.data_dir, log });
      server = new Server(config, log, storage, accounts, certs, saslSecret);
      await server.boot(options.plugins ?? [], options.s2sResolver);
      return server;
    } catch (err) {
      if (server) await server.stop().catch(() => undefined);
      else await storage.close().catch(() => undefined);
      throw err;
    }
  }

  private async boot(extra: readonly PluginDefinition<any>[], s2sResolver?: SrvResolver): Promise<void> {
    this.catalog = new Map(builtinPlugins);
    for (const def of extra) this.catalog.set(def.name, async () => def);
    for (const name of this.config.core.hosts) {
      const host = new HostContext(name, this.log);
      this.hostContexts.set(name, host);
      await loadHostPlugins(host, this.config.modulesFor(name), this.catalog, this.config, this.pluginDeps());
    }
    this.closers.push(async () => {
      for (const host of this.hostContexts.values()) await unloadHostPlugins(host);
    });
    // After the modules, so that a component domain a module already serves stops the boot.
    this.externalComponents.start(this.config.core.components);
    await this.startAdmin();
    await this.startS2S(s2sResolver);
    await this.startListeners();
    // Registered after the listeners so it runs before them on stop: peers get system-shutdown.
    this.closers.push(async () => this.s2s?.close());
    // Registered last so it runs first on stop: components get their stream error before the
    // listeners drop every socket.
    this.closers.push(async () => this.externalComponents.close());
    this.log.info('server started', {
      hosts: this.hosts,
      listeners: this.listeners.map((l) => `${l.module}:${l.port}`),
    });
  }

  private pluginDeps() {
    return { server: this as ServerApi, http: this.http, log: this.log };
  }

  /**
   * Re-reads the config file and applies what can change while running: hosts, modules and
   * their options, certificates, limits and auth settings for new connections. Connected
   * sessions stay. A config that does not load, or modules that do not validate, change nothing.
   * Listeners, storage and the data directory need a restart.
   */
  async reload(): Promise<string> {
    const next = await loadConfig(this.config.file);
    const core = next.core;
    const old = this.config.core;
    const certs = await loadCertificates({ certfiles: core.certfiles, hosts: [...core.hosts], dataDir: old.data_dir, log: this.log });
    const notes: string[] = [];
    if (JSON.stringify(core.listen) !== JSON.stringify(old.listen)) notes.push('listen changes need a restart');
    if (JSON.stringify(core.storage) !== JSON.stringify(old.storage) || core.data_dir !== old.data_dir) {
      notes.push('storage and data_dir changes need a restart');
    }
    // Validate every host's modules before changing any host.
    const added = core.hosts.filter((h) => !this.hostContexts.has(h));
    const removed = [...this.hostContexts.keys()].filter((h) => !core.hosts.includes(h));
    const changes: string[] = [];
    for (const name of core.hosts) await prepareHostPlugins(name, next.modulesFor(name), this.catalog, next);
    // Read before anything changes, so a missing or broken CA file refuses the whole reload.
    const s2sTrust = await TrustStore.load(core.s2s.ca_files, core.s2s.system_cas);
    this.certs.replace(certs);
    this.s2sTrust = s2sTrust;
    this.currentConfig = next;
    for (const name of removed) {
      const host = this.hostContexts.get(name)!;
      for (const s of [...this.sessions.all()]) if (s.host === name) s.close(new StreamError('host-gone'));
      await unloadHostPlugins(host);
      this.hostContexts.delete(name);
      changes.push(`host ${name} removed`);
    }
    for (const name of core.hosts) {
      let host = this.hostContexts.get(name);
      if (!host) {
        host = new HostContext(name, this.log);
        this.hostContexts.set(name, host);
        await loadHostPlugins(host, next.modulesFor(name), this.catalog, next, this.pluginDeps());
        changes.push(`host ${name} added`);
        continue;
      }
      const r = await reconcileHostPlugins(host, next.modulesFor(name), this.catalog, next, this.pluginDeps());
      if (r.loaded.length || r.unloaded.length) {
        changes.push(`${name}: reloaded ${[...new Set([...r.unloaded, ...r.loaded])].sort().join(', ')}`);
      }
    }
    changes.push(...this.externalComponents.reload(core.components));
    const summary = [`configuration reloaded${changes.length ? ': ' + changes.join('; ') : ' (no module changes)'}`, ...notes].join('; ');
    this.log.info('reload', { changes, notes, added, removed });
    return summary;
  }

  /** Runs reload for signals and the admin socket: a failure is logged and the old config stays. */
  async reloadSafely(): Promise<string> {
    try {
      return await this.reload();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.log.error('reload refused, keeping the running configuration', { error: message });
      throw new AdminCommandError(`reload refused: ${message}`);
    }
  }

  /** The text of `parleyctl stats`: sessions with their queues, then each host's offline spool. */
  async stats(): Promise<string> {
    const lines = [`sessions: ${this.sessions.size}`];
    let inTotal = 0;
    let outTotal = 0;
    const rows: string[] = [];
    for (const s of this.sessions.all()) {
      const st = s.stats();
      inTotal += st.stanzasIn;
      outTotal += st.stanzasOut;
      rows.push(`${s.jid?.full ?? s.id}\tin=${st.stanzasIn}\tout=${st.stanzasOut}\tqueue=${st.queued}\tunacked=${st.unacked}\tsendbuf=${st.sendBuffer}`);
    }
    lines.push(`stanzas in: ${inTotal}`, `stanzas out: ${outTotal}`, ...rows);
    for (const [name, host] of this.hostContexts) {
      const offline = host.services.get('offline') as { stats(): Promise<OfflineSpoolStats> } | undefined;
      if (!offline) continue;
      const o = await offline.stats();
      lines.push(`offline ${name}: stored=${o.stored} delivered=${o.delivered} acked=${o.acked} expired=${o.expired} `
        + `removed=${o.removed} refused=${o.refused} waiting=${o.messages} users=${o.users}`);
      for (const q of o.queues) lines.push(`offline queue\t${q.user}\t${q.length}`);
    }
    lines.push(...this.externalComponents.statsLines());
    lines.push(...(this.s2s?.stats() ?? []));
    return lines.join('\n');
  }

  private async startAdmin(): Promise<void> {
    const socketPath = this.config.core.admin.socket ?? path.join(this.config.core.data_dir, 'parleyctl.sock');
    const commands = createAdminCommands({
      accounts: this.accounts,
      storage: this.storage,
      hosts: this.hosts,
      kickUser: (bare, reason) => this.kickUser(bare, reason),
      status: () => `running: ${this.sessions.size} session(s), up ${Math.round((Date.now() - this.startedAt) / 1000)} s`,
      kick: (jid) => this.kick(jid),
      stats: () => this.stats(),
      reload: () => this.reloadSafely(),
      stop: () => {
        // Answer first, then stop: the caller is waiting on this very socket.
        setTimeout(() => void this.stop().then(() => this.onStopped?.()), 50);
      },
    });
    const admin = await startAdminSocket({ path: socketPath, commands, log: this.log.child({ component: 'admin' }) });
    this.closers.push(() => admin.close());
  }

  private async startListeners(): Promise<void> {
    const core = this.config.core;
    const limits = core.limits;
    for (const l of core.listen) {
      if (l.module === 'c2s') {
        await this.listenXmpp(l, (socket) => this.acceptC2S(socket, l.tls, l.starttls_required));
      } else if (l.module === 'http') {
        const listener = await startHttpListener({
          port: l.port,
          ip: l.ip,
          tls: l.tls ? this.certs : undefined,
          router: this.http,
          log: this.log.child({ component: 'http' }),
          limits: {
            maxHeaderSize: limits.http_max_header_size,
            requestTimeout: limits.http_request_timeout,
            headersTimeout: limits.http_headers_timeout,
            keepAliveTimeout: limits.http_keepalive_timeout,
            maxConnections: l.max_connections,
          },
        });
        this.listeners.push({ module: 'http', port: listener.port, close: () => listener.close() });
      } else if (l.module === 's2s') {
        // TLS is always required on server streams; starttls_required does not apply.
        await this.listenXmpp(l, (socket) => this.s2s!.accept(socket, l.tls));
      } else if (l.module === 'component') {
        await this.listenXmpp(l, (socket) => this.externalComponents.accept(socket, l.tls));
      } else {
        throw new BootError('LISTEN_FAILED', `listener module '${l.module}' on port ${l.port} is not available yet`);
      }
    }
    this.closers.push(async () => {
      for (const l of this.listeners) await l.close();
    });
  }

  /** A TCP listener for XMPP streams (c2s, component) with the entry's connection limits. */
  private async listenXmpp(l: CoreConfig['listen'][number], onConnection: (socket: Socket) => void): Promise<void> {
    const listener = await listenTcp({
      port: l.port,
      ip: l.ip,
      log: this.log,
      maxConnections: l.max_connections,
      maxConnectionsPerIp: l.max_connections_per_ip,
      onConnection,
    });
    this.listeners.push({ module: l.module, port: listener.port, close: () => listener.close() });
  }

  /** Federation: the trust store, the dialback secret and the service that owns all server streams. */
  private async startS2S(resolver: SrvResolver | undefined): Promise<void> {
    const config = this.config.core.s2s;
    this.s2sTrust = await TrustStore.load(config.ca_files, config.system_cas);
    const secret = await loadDialbackSecret(this.storage, config.dialback_secret);
    const s2s = new S2SService({
      log: this.log.child({ component: 's2s' }),
      config: () => this.config.core.s2s,
      xmlLimits: () => this.xmlLimits(),
      certs: this.certs,
      trust: () => this.s2sTrust!,
      secret,
      ...(resolver ? { resolver } : {}),
      isLocal: (domain) => this.isLocal(domain),
      route: (stanza) => void this.route(stanza),
      bounce: (stanza, error) => this.router.bounce(stanza, error),
    });
    this.s2s = s2s;
  }

  private sendRemote(stanza: Element, from: Jid, to: Jid): void {
    if (this.s2s) this.s2s.send(stanza, from, to);
    else this.router.bounce(stanza, new StanzaError('remote-server-not-found'));
  }

  private acceptC2S(socket: Socket, directTls: boolean, starttlsRequired: boolean): void {
    let stream = socket;
    if (directTls) {
      const secured = new TLSSocket(socket, { isServer: true, ALPNProtocols: ['xmpp-client'], ...this.certs.serverOptions() });
      secured.on('error', () => secured.destroy());
      stream = secured;
    }
    this.startC2S(stream, directTls, starttlsRequired);
  }

  /** The parser limits of `limits:`, shared by client, server and component streams. */
  private xmlLimits(): XmlLimits {
    const limits = this.config.core.limits;
    return {
      maxStanzaBytes: limits.max_stanza_size,
      maxDepth: limits.max_xml_depth,
      maxAttributes: limits.max_attributes,
      maxTokenBytes: limits.max_token_size,
    };
  }

  get maxStanzaSize(): number {
    return this.config.core.limits.max_stanza_size;
  }

  createClientSession(stream: ClientStream, options: { secure: boolean }): ClientSession {
    // C2SSession uses only the Duplex side of a net.Socket plus setTimeout and remoteAddress,
    // which ClientStream declares; the framed transports (WebSocket, BOSH) provide exactly those.
    return this.startC2S(stream as unknown as Socket, options.secure, false);
  }

  private startC2S(stream: Socket, directTls: boolean, starttlsRequired: boolean): C2SSession {
    const limits = this.config.core.limits;
    return new C2SSession(stream, {
      log: this.log,
      sessions: this.sessions,
      router: this.router,
      accounts: this.accounts,
      certs: this.certs,
      saslSecret: this.saslSecret,
      authThrottle: this.authThrottle,
      hostFor: (domain) => this.hostContexts.get(domain),
    }, {
      directTls,
      starttlsRequired,
      mechanisms: this.config.core.auth.mechanisms,
      xmlLimits: this.xmlLimits(),
      handshakeTimeoutMs: limits.c2s_handshake_timeout,
      idleTimeoutMs: limits.c2s_idle_timeout,
      sendQueueBytes: limits.c2s_send_queue,
      maxAuthFailures: limits.c2s_max_auth_failures,
      ...c2sAuthOptions(this.config.core.auth),
    });
  }

  isLocal(domain: string): boolean {
    return this.hostContexts.has(domain) || this.components.has(domain);
  }

  registerComponent(domain: string, handler: ComponentHandler): () => void {
    const name = Jid.parse(domain).domain;
    if (this.hostContexts.has(name) || this.components.has(name)) {
      throw new Error(`domain ${name} is already served here`);
    }
    this.components.set(name, handler);
    return () => {
      if (this.components.get(name) === handler) this.components.delete(name);
    };
  }

  host(name: string): HostContext | undefined {
    return this.hostContexts.get(name);
  }

  route(stanza: Element, session?: ClientSession): Promise<void> {
    return this.router.route(stanza, session);
  }

  sendIq(iq: Element, timeoutMs?: number): Promise<Element> {
    return this.router.sendIq(iq, timeoutMs);
  }

  kickUser(bare: string, reason: string): void {
    for (const s of this.sessions.resources(Jid.parse(bare).bare)) s.close(new StreamError('not-authorized', reason));
  }

  /** Disconnects a full JID, or every session of a bare JID; returns how many. */
  kick(jid: string): number {
    const target = Jid.parse(jid);
    const sessions = target.resource
      ? [this.sessions.get(target.bare, target.resource)].filter((s): s is ClientSession => s !== undefined)
      : this.sessions.resources(target.bare);
    for (const s of sessions) s.close(new StreamError('policy-violation', 'disconnected by an administrator'));
    return sessions.length;
  }

  /** Called after an admin `stop` has shut the server down (the CLI exits the process). */
  onStopped: (() => void) | undefined;

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const s of [...this.sessions.all()]) s.close(new StreamError('system-shutdown'));
    for (const close of this.closers.reverse()) {
      try {
        await close();
      } catch (err) {
        this.log.error('shutdown step failed', { err });
      }
    }
    await this.storage.close();
    this.log.info('server stopped');
  }
}
