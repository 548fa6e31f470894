// Two in-process Parley servers federating over loopback: a.test and b.test, each with an s2s
// listener and a static route to the other. B starts first with its route to A's port unknown;
// A then starts routed to B, and B's config is rewritten with A's port and reloaded (routes are
// read per connection, so a reload is all it takes).
import { readFileSync, writeFileSync } from 'node:fs';
import { startTestServer, type TestServer } from './server.js';

export const S2S_LISTEN = '  - port: 0\n    ip: 127.0.0.1\n    module: s2s';
export const IM_MODULES = '  disco: {}\n  ping: {}\n  roster: {}\n  presence: {}\n  muc: {}';

export interface PairOptions {
  /** Extra lines of each server's `s2s:` section (indented by two spaces). */
  aS2s?: string;
  bS2s?: string;
  /** Extra top-level YAML (certfiles: ...). */
  aYaml?: string;
  bYaml?: string;
  modules?: string;
  /** Extra domains routed to B (e.g. conference.b.test) */
  bDomains?: string[];
  listenTls?: boolean;
  /** Extra `listen:` items of A (e.g. a component listener). */
  aListen?: string;
  /** Extra domains served by A that B routes to A (e.g. an external component's). */
  bRoutesToA?: string[];
}

export interface Pair {
  a: TestServer;
  b: TestServer;
  close(): Promise<void>;
}

export function routeYaml(routes: Record<string, number>, tls = false): string {
  const lines = Object.entries(routes).map(([domain, port]) => `    ${domain}: { host: 127.0.0.1, port: ${port}${tls ? ', tls: direct' : ''} }`);
  return lines.length ? `  routes:\n${lines.join('\n')}` : '';
}

function s2sSection(extra: string | undefined, routes: string): string {
  return ['s2s:', extra ?? '', routes].filter((l) => l !== '').join('\n');
}

const listen = (tls: boolean) => (tls ? `${S2S_LISTEN}\n    tls: true` : S2S_LISTEN);

export async function startPair(o: PairOptions = {}): Promise<Pair> {
  const tls = o.listenTls ?? false;
  const b = await startTestServer({
    hosts: ['b.test'],
    listen: listen(tls),
    modules: o.modules ?? IM_MODULES,
    yaml: [o.bYaml ?? '', s2sSection(o.bS2s, '')].join('\n'),
  });
  const bPort = b.ports('s2s')[0]!;
  const bRoutes: Record<string, number> = { 'b.test': bPort };
  for (const d of o.bDomains ?? ['conference.b.test']) bRoutes[d] = bPort;
  const a = await startTestServer({
    hosts: ['a.test'],
    listen: [listen(tls), o.aListen ?? ''].join('\n'),
    modules: o.modules ?? IM_MODULES,
    yaml: [o.aYaml ?? '', s2sSection(o.aS2s, routeYaml(bRoutes, tls))].join('\n'),
  });
  const aPort = a.ports('s2s')[0]!;
  const aRoutes: Record<string, number> = { 'a.test': aPort, 'conference.a.test': aPort };
  for (const d of o.bRoutesToA ?? []) aRoutes[d] = aPort;
  const text = readFileSync(b.configFile, 'utf8').replace(/^s2s:$/m, `s2s:\n${routeYaml(aRoutes, tls)}`);
  writeFileSync(b.configFile, text);
  await b.server.reload();
  return {
    a,
    b,
    async close() {
      await a.close();
      await b.close();
    },
  };
}
