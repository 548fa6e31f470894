// Builds the context a plugin's setup() receives. Every registration pushes its undo function,
// so unloading a plugin removes exactly what it added.
import type { Element } from 'ltx';
import { StanzaError } from '../errors.js';
import type { Logger } from '../log.js';
import type { HttpRouter } from '../net/http.js';
import type { ServerApi } from '../server-api.js';
import type { HostContext } from './host.js';
import type { IqHandler, IqOptions, IqTarget, PluginContext, PluginDefinition } from './types.js';

export interface ContextDeps {
  server: ServerApi;
  host: HostContext;
  http: HttpRouter;
  log: Logger;
}

/** Hook event of an IQ request: `iq-get/host/urn:xmpp:ping:ping` (DESIGN §3 vocabulary). */
export function iqEvent(type: 'get' | 'set', target: IqTarget, xmlns: string, name: string): string {
  return `iq-${type}/${target}/${xmlns}:${name}`;
}

/** Marks an IQ hook's answer so an empty result (undefined payload) still stops the chain. */
export interface IqAnswer {
  readonly iqAnswer: true;
  readonly payload: Element | undefined;
}

export function createPluginContext<O>(
  def: PluginDefinition<O>,
  options: O,
  deps: ContextDeps,
): { ctx: PluginContext<O>; disposers: Array<() => unknown> } {
  const disposers: Array<() => unknown> = [];
  const { host, server } = deps;
  const log = deps.log.child({ plugin: def.name, host: host.name });
  const track = (undo: () => unknown): void => {
    disposers.push(undo);
  };

  const registerIq = (type: 'get' | 'set') =>
    (xmlns: string, name: string, handler: IqHandler, opts: IqOptions = {}): void => {
      for (const target of opts.to ?? ['host']) {
        const wrapped = async (req: Parameters<IqHandler>[0]): Promise<IqAnswer> => {
          try {
            const payload = await handler(req);
            return { iqAnswer: true, payload: payload ?? undefined };
          } catch (err) {
            if (err instanceof StanzaError) throw err;
            // A bug in a handler answers internal-server-error, logged with the plugin's name.
            log.error('iq handler failed', { err, xmlns, name });
            throw new StanzaError('internal-server-error');
          }
        };
        track(host.hooks.on(iqEvent(type, target, xmlns, name), wrapped, opts.priority ?? 0, def.name));
      }
    };

  const ctx: PluginContext<O> = {
    name: def.name,
    host: host.name,
    options,
    log,
    server,
    hook(event, fn, priority = 0) {
      track(host.hooks.on(event, fn, priority, def.name));
    },
    emit: (event, arg) => host.hooks.emit(event, arg),
    run: (event, arg) => host.hooks.run(event, arg),
    iq: { get: registerIq('get'), set: registerIq('set') },
    feature(ns, where = 'host') {
      track((where === 'host' ? host.features : host.accountFeatures).add(ns));
    },
    identity(identity, where = 'host') {
      track((where === 'host' ? host.identities : host.accountIdentities).add(identity));
    },
    discoItem(item) {
      track(host.items.add(item));
    },
    discoExtension(form) {
      track(host.extensions.add(form));
    },
    store: {
      keyval: (name) => server.storage.keyval(name),
      map: (name) => server.storage.map(name),
      archive: (name) => server.storage.archive(name),
    },
    provide(name, service) {
      if (host.services.has(name)) throw new Error(`service '${name}' is already provided on ${host.name}`);
      host.services.set(name, service);
      track(() => host.services.delete(name));
    },
    use<T>(name: string) {
      return host.services.get(name) as T | undefined;
    },
    every(ms, fn) {
      const timer = setInterval(() => {
        Promise.resolve()
          .then(fn)
          .catch((err: unknown) => log.error('timer failed', { err }));
      }, ms);
      timer.unref();
      track(() => clearInterval(timer));
    },
    onClose(fn) {
      track(fn);
    },
    http(prefix, handler, opts) {
      track(deps.http.mount(prefix, handler, opts));
    },
    httpUpgrade(prefix, handler) {
      track(deps.http.mountUpgrade(prefix, handler));
    },
    c2s: {
      element(xmlns, name, handler) {
        const key = host.elementKey(xmlns, name);
        if (host.elementHandlers.has(key)) throw new Error(`element ${key} already has a handler on ${host.name}`);
        host.elementHandlers.set(key, handler);
        track(() => host.elementHandlers.delete(key));
      },
      feature(provider) {
        track(host.featureProviders.add(provider));
      },
      outgoing(filter) {
        track(host.outgoingFilters.add(filter));
      },
    },
    component(domain, handler) {
      track(server.registerComponent(domain, handler));
    },
    route(stanza) {
      return server.route(stanza);
    },
  };
  return { ctx, disposers };
}
