// Logins per second (DESIGN §10: ≥ 500/s): TCP connect, STARTTLS, SCRAM-SHA-1, bind, and the
// roster fetch when the roster module runs, with C logins in progress at once; each session
// closes its stream once logged in. The baseline: full TLS handshakes per second against the
// echo server at the same concurrency, i.e. the part of a login that Node's TLS costs anyway.
import { XmppClient, tlsHandshake } from '../conn.js';
import type { Options } from '../options.js';
import type { NodeChild } from '../procs.js';
import type { ScenarioResult } from '../report.js';
import { HOST, startEcho, startParley, type BenchEnv } from '../setup.js';
import { Latency, cpuMeter, runPool, within } from '../stats.js';

interface Measured {
  perSecond: number;
  seconds: number;
  latency: ReturnType<Latency['summary']>;
  serverCpuPercent: number;
  /** Server CPU time per login: unlike the rate, it hardly depends on what else the machine runs. */
  serverCpuMsPerLogin: number;
  benchCpuPercent: number;
}

async function burst(child: NodeChild, o: Options, one: (i: number) => Promise<void>): Promise<Measured> {
  // Unmeasured warm-up: the first logins compile code paths on both sides.
  await runPool(Math.min(100, o.logins), o.concurrency, one);
  const latency = new Latency();
  const cpu0 = child.cpuMs();
  const benchCpu = cpuMeter();
  const t0 = performance.now();
  await runPool(o.logins, o.concurrency, async (i) => {
    const s = performance.now();
    await one(i);
    latency.recordMs(performance.now() - s);
  });
  const ms = performance.now() - t0;
  const cpu = child.cpuMs() - cpu0;
  return {
    perSecond: (o.logins / ms) * 1000,
    seconds: ms / 1000,
    latency: latency.summary(),
    serverCpuPercent: (cpu / ms) * 100,
    serverCpuMsPerLogin: cpu / o.logins,
    benchCpuPercent: benchCpu(),
  };
}

export async function logins(env: BenchEnv, o: Options, roster: boolean): Promise<ScenarioResult> {
  const limitMs = 60_000 + o.logins * 200;

  env.log(`logins: ${o.logins} full logins, ${o.concurrency} at a time${roster ? ' (with roster fetch)' : ''}…`);
  const server = await startParley(env);
  let parley: Measured;
  try {
    parley = await within(limitMs, 'logins (parley)', burst(server, o, async (i) => {
      const c = await XmppClient.login({
        port: server.port,
        host: HOST,
        user: env.users[i % env.users.length]!,
        password: env.password,
        keys: env.keys,
        roster,
        presence: false,
      });
      c.close();
    }));
  } finally {
    await server.stop();
  }

  env.log(`logins: ${o.logins} TLS handshakes against the echo server…`);
  const echo = await startEcho(env);
  let base: Measured;
  try {
    base = await within(limitMs, 'TLS handshakes (echo)', burst(echo, o, () => tlsHandshake(echo.port)));
  } finally {
    await echo.stop();
  }

  return {
    name: 'logins',
    status: 'ok',
    note: [
      `${o.logins} logins, ${o.concurrency} concurrent; baseline = TLS handshakes`,
      `CPU: server ${parley.serverCpuPercent.toFixed(0)}% / echo ${base.serverCpuPercent.toFixed(0)}% of a core, load generator ${parley.benchCpuPercent.toFixed(0)}% / ${base.benchCpuPercent.toFixed(0)}%`,
      roster ? 'login includes the roster fetch' : 'no roster fetch (roster module not enabled in the config)',
      server.logNote(),
    ].filter(Boolean).join('; '),
    rows: [
      { metric: 'logins per second', unit: '/s', parley: parley.perSecond, baseline: base.perSecond, target: { op: '>=', value: 500 } },
      { metric: 'login time p99', unit: 'ms', parley: parley.latency.p99, baseline: base.latency.p99 },
      { metric: 'server CPU per login', unit: 'ms', parley: parley.serverCpuMsPerLogin, baseline: base.serverCpuMsPerLogin },
    ],
    details: { logins: o.logins, concurrency: o.concurrency, roster, parley, baseline: base },
  };
}
