// Per-host registry of what the host's plugins registered: hooks, disco data, stream features,
// element handlers and shared services.
import type { Element } from 'ltx';
import { HookBus } from '../hooks.js';
import type { Logger } from '../log.js';
import type { DiscoIdentity, ElementHandler, FeatureProvider, OutgoingFilter, PluginDefinition } from './types.js';

/** A multiset that keeps insertion order, so two plugins may register the same feature. */
export class CountedSet<T> {
  private readonly counts = new Map<T, number>();
  add(v: T): () => void {
    this.counts.set(v, (this.counts.get(v) ?? 0) + 1);
    return () => {
      const n = (this.counts.get(v) ?? 0) - 1;
      if (n > 0) this.counts.set(v, n);
      else this.counts.delete(v);
    };
  }
  has(v: T): boolean {
    return this.counts.has(v);
  }
  values(): T[] {
    return [...this.counts.keys()];
  }
}

/** Registration list that returns a remover for each entry. */
export class Registrations<T> {
  private readonly items: T[] = [];
  add(v: T): () => void {
    this.items.push(v);
    return () => {
      const i = this.items.indexOf(v);
      if (i !== -1) this.items.splice(i, 1);
    };
  }
  values(): readonly T[] {
    return this.items;
  }
}

export interface LoadedPlugin {
  definition: PluginDefinition<any>;
  options: unknown;
  unload(): Promise<void>;
}

export class HostContext {
  readonly hooks: HookBus;
  readonly features = new CountedSet<string>();
  readonly accountFeatures = new CountedSet<string>();
  readonly identities = new Registrations<DiscoIdentity>();
  readonly accountIdentities = new Registrations<DiscoIdentity>();
  readonly items = new Registrations<{ jid: string; name?: string; node?: string }>();
  readonly extensions = new Registrations<() => Element>();
  readonly featureProviders = new Registrations<FeatureProvider>();
  readonly outgoingFilters = new Registrations<OutgoingFilter>();
  readonly elementHandlers = new Map<string, ElementHandler>();
  readonly services = new Map<string, unknown>();
  readonly plugins = new Map<string, LoadedPlugin>();

  constructor(readonly name: string, log: Logger) {
    this.hooks = new HookBus(log.child({ host: name }));
  }

  elementKey(xmlns: string, name: string): string {
    return `${xmlns} ${name}`;
  }
}
