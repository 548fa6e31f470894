// Loads a host's plugins: resolves names to definitions, validates options against each plugin's
// schema (errors carry the config file position), checks requires/optional, orders by
// dependency and runs setup. A failing setup undoes what that plugin registered and stops boot.
import { BootError } from '../errors.js';
import { ConfigError, validate, type Path, type ParseContext } from '../config/schema.js';
import type { HostContext, LoadedPlugin } from './host.js';
import type { PluginDefinition } from './types.js';
import { createPluginContext, type ContextDeps } from './context.js';

export type PluginCatalog = ReadonlyMap<string, () => Promise<PluginDefinition<any>>>;

export interface EnabledModule {
  raw: unknown;
  path: Path;
}

async function runDisposers(disposers: Array<() => unknown>): Promise<void> {
  // Undo in reverse order of registration.
  for (const undo of disposers.reverse()) {
    try {
      await undo();
    } catch {
      // An undo that fails must not keep the rest from running.
    }
  }
}

/** Orders names so that each comes after the plugins it requires or optionally uses. */
function dependencyOrder(defs: Map<string, PluginDefinition<any>>): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, chain: string[]): void => {
    const s = state.get(name);
    if (s === 'done') return;
    if (s === 'visiting') {
      throw new BootError('PLUGIN_CYCLE', `plugin dependency cycle: ${[...chain, name].join(' -> ')}`);
    }
    state.set(name, 'visiting');
    const def = defs.get(name)!;
    for (const dep of [...(def.requires ?? []), ...(def.optional ?? [])]) {
      if (defs.has(dep)) visit(dep, [...chain, name]);
    }
    state.set(name, 'done');
    order.push(name);
  };
  for (const name of [...defs.keys()].sort()) visit(name, []);
  return order;
}

interface PreparedPlugins {
  defs: Map<string, PluginDefinition<any>>;
  options: Map<string, unknown>;
}

/**
 * Resolves and validates a host's module set without touching the running host: unknown modules,
 * missing dependencies and bad options all fail here, before anything is loaded or unloaded.
 */
export async function prepareHostPlugins(
  hostName: string,
  enabled: Map<string, EnabledModule>,
  catalog: PluginCatalog,
  parse: ParseContext,
): Promise<PreparedPlugins> {
  const defs = new Map<string, PluginDefinition<any>>();
  for (const [name, mod] of enabled) {
    const load = catalog.get(name);
    if (!load) {
      const where = parse.locate(mod.path);
      const known = [...catalog.keys()].sort().join(', ');
      throw new BootError('PLUGIN_UNKNOWN',
        `${where ? where + ': ' : ''}${mod.path.join('.')}: unknown module '${name}' (known: ${known})`);
    }
    const def = await load();
    if (def.name !== name) {
      throw new BootError('PLUGIN_SETUP', `module '${name}' defines itself as '${def.name}'`);
    }
    defs.set(name, def);
  }
  for (const def of defs.values()) {
    for (const dep of def.requires ?? []) {
      if (!defs.has(dep)) {
        throw new BootError('PLUGIN_MISSING_DEPENDENCY',
          `module '${def.name}' requires module '${dep}', which is not enabled for host ${hostName}`);
      }
    }
  }
  const options = new Map<string, unknown>();
  for (const [name, def] of defs) {
    const mod = enabled.get(name)!;
    // `ping:` with no value in YAML means "enabled with defaults".
    const raw = mod.raw === null ? undefined : mod.raw;
    if (!def.options && raw !== undefined && (typeof raw !== 'object' || Object.keys(raw as object).length > 0)) {
      // A module without options must not silently accept (and ignore) misspelt ones.
      throw new ConfigError(mod.path, `module '${name}' takes no options`, parse.locate(mod.path));
    }
    options.set(name, def.options ? validate(def.options, raw ?? {}, mod.path, parse) : raw);
  }
  dependencyOrder(defs); // reports cycles now rather than halfway through loading
  return { defs, options };
}

export async function loadHostPlugins(
  host: HostContext,
  enabled: Map<string, EnabledModule>,
  catalog: PluginCatalog,
  parse: ParseContext,
  deps: Omit<ContextDeps, 'host'>,
): Promise<void> {
  const { defs, options } = await prepareHostPlugins(host.name, enabled, catalog, parse);
  for (const name of dependencyOrder(defs)) {
    await loadOne(host, defs.get(name)!, options.get(name), { ...deps, host });
  }
}

/**
 * Applies a new module set to a running host (config reload): only modules that were added,
 * removed or whose options changed are unloaded and loaded again, together with the modules that
 * depend on them. Everything is validated first, so a bad config changes nothing.
 */
export async function reconcileHostPlugins(
  host: HostContext,
  enabled: Map<string, EnabledModule>,
  catalog: PluginCatalog,
  parse: ParseContext,
  deps: Omit<ContextDeps, 'host'>,
): Promise<{ loaded: string[]; unloaded: string[] }> {
  const next = await prepareHostPlugins(host.name, enabled, catalog, parse);
  const same = (name: string): boolean => {
    const old = host.plugins.get(name);
    return old !== undefined && next.defs.get(name) === old.definition
      && JSON.stringify(old.options) === JSON.stringify(next.options.get(name));
  };
  const affected = new Set<string>();
  for (const name of new Set([...host.plugins.keys(), ...next.defs.keys()])) if (!same(name)) affected.add(name);
  // Dependents of a changed module captured the old one's services at setup: reload them too.
  const dependsOn = (def: PluginDefinition<any>): string[] => [...(def.requires ?? []), ...(def.optional ?? [])];
  let grew = true;
  while (grew) {
    grew = false;
    const all = [...host.plugins.values()].map((p) => p.definition).concat([...next.defs.values()]);
    for (const def of all) {
      if (!affected.has(def.name) && dependsOn(def).some((d) => affected.has(d))) {
        affected.add(def.name);
        grew = true;
      }
    }
  }
  const unloaded: string[] = [];
  const loadedOrder = [...host.plugins.keys()];
  for (const name of loadedOrder.reverse()) {
    if (!affected.has(name)) continue;
    await host.plugins.get(name)!.unload();
    unloaded.push(name);
  }
  const loaded: string[] = [];
  for (const name of dependencyOrder(next.defs)) {
    if (!affected.has(name)) continue;
    await loadOne(host, next.defs.get(name)!, next.options.get(name), { ...deps, host });
    loaded.push(name);
  }
  return { loaded, unloaded };
}

export async function loadOne(
  host: HostContext,
  def: PluginDefinition<any>,
  options: unknown,
  deps: ContextDeps,
): Promise<LoadedPlugin> {
  const { ctx, disposers } = createPluginContext(def, options, deps);
  try {
    await def.setup(ctx);
  } catch (err) {
    await runDisposers(disposers);
    const msg = err instanceof Error ? err.message : String(err);
    throw new BootError('PLUGIN_SETUP', `module '${def.name}' failed to start on ${host.name}: ${msg}`, { cause: err });
  }
  const loaded: LoadedPlugin = {
    definition: def,
    options,
    unload: async () => {
      host.plugins.delete(def.name);
      await runDisposers(disposers);
    },
  };
  host.plugins.set(def.name, loaded);
  return loaded;
}

/** Unloads in reverse dependency order. */
export async function unloadHostPlugins(host: HostContext): Promise<void> {
  for (const plugin of [...host.plugins.values()].reverse()) await plugin.unload();
}
