// Where to connect for a remote domain (RFC 6120 §3.2, XEP-0368): a static route if configured;
// else the SRV records `_xmpps-server._tcp` (Direct TLS) and `_xmpp-server._tcp` (STARTTLS), each
// ordered by RFC 2782 (priority, then a weighted random pick), merged by priority with Direct TLS
// first on ties; else the domain itself on port 5269. The resolver is injected, so tests can
// answer SRV queries without a DNS server.
import { Resolver } from 'node:dns/promises';
import type { S2SRoute } from './config.js';

export interface SrvRecord {
  name: string;
  port: number;
  priority: number;
  weight: number;
}

export interface SrvResolver {
  /** Rejects with code ENOTFOUND / ENODATA when there are no records. */
  resolveSrv(name: string): Promise<SrvRecord[]>;
  /** Abandons outstanding queries (at shutdown). */
  cancel?(): void;
}

export interface Target {
  host: string;
  port: number;
  /** `direct`: TLS from the first byte; `starttls`: plain TCP, then STARTTLS. */
  tls: 'direct' | 'starttls';
}

export const DEFAULT_S2S_PORT = 5269;

export function systemResolver(): SrvResolver {
  return new Resolver();
}

/**
 * RFC 2782 order: ascending priority; within one priority, repeatedly pick a record at random
 * with probability proportional to its weight (records of weight 0 first in the running sum, so
 * they are chosen rarely but not never). `random` returns [0, 1).
 */
export function orderSrv(records: readonly SrvRecord[], random: () => number = Math.random): SrvRecord[] {
  const byPriority = new Map<number, SrvRecord[]>();
  for (const r of records) byPriority.set(r.priority, [...(byPriority.get(r.priority) ?? []), r]);
  const out: SrvRecord[] = [];
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    const left = [...byPriority.get(priority)!].sort((a, b) => (a.weight === 0 ? 0 : 1) - (b.weight === 0 ? 0 : 1));
    while (left.length > 0) {
      const total = left.reduce((sum, r) => sum + r.weight, 0);
      const pick = Math.floor(random() * (total + 1));
      let running = 0;
      let index = left.length - 1;
      for (let i = 0; i < left.length; i++) {
        running += left[i]!.weight;
        if (running >= pick) {
          index = i;
          break;
        }
      }
      out.push(left.splice(index, 1)[0]!);
    }
  }
  return out;
}

async function lookup(resolver: SrvResolver, name: string): Promise<SrvRecord[] | undefined> {
  try {
    return await resolver.resolveSrv(name);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // No records is an answer; a failing DNS server is treated the same, so the A record
    // fallback still gets its chance.
    if (code === 'ENOTFOUND' || code === 'ENODATA' || code === 'ESERVFAIL' || code === 'ETIMEOUT' || code === 'ECONNREFUSED') return undefined;
    throw err;
  }
}

/** The connection targets for a domain, best first; empty when the domain says it offers no service. */
export async function resolveTargets(
  domain: string,
  options: { routes: Readonly<Record<string, S2SRoute>>; resolver: SrvResolver; random?: () => number },
): Promise<Target[]> {
  const route = options.routes[domain];
  if (route) return [{ host: route.host, port: route.port, tls: route.tls }];
  const [direct, starttls] = await Promise.all([
    lookup(options.resolver, `_xmpps-server._tcp.${domain}`),
    lookup(options.resolver, `_xmpp-server._tcp.${domain}`),
  ]);
  if (!direct?.length && !starttls?.length) return [{ host: domain, port: DEFAULT_S2S_PORT, tls: 'starttls' }];
  const tagged = [
    ...orderSrv(direct ?? [], options.random).map((r) => ({ r, tls: 'direct' as const })),
    ...orderSrv(starttls ?? [], options.random).map((r) => ({ r, tls: 'starttls' as const })),
  ];
  // A stable sort keeps each list's RFC 2782 order and puts Direct TLS first on equal priority.
  tagged.sort((a, b) => a.r.priority - b.r.priority);
  // RFC 2782: a single record with target "." means the service is decidedly not available.
  return tagged.filter(({ r }) => r.name !== '.' && r.name !== '').map(({ r, tls }) => ({ host: r.name, port: r.port, tls }));
}
