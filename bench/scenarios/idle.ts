// Idle authenticated TLS sessions (DESIGN §10: ≤ 35 KB of server RSS each). N sessions log in
// (STARTTLS, SCRAM-SHA-1, bind, roster when enabled, initial presence) and stay idle; the cost
// per session is the growth of the server's VmRSS divided by N. The baseline does the same with
// N idle TLS connections to the echo server.
import { EchoClient, XmppClient, type Conn } from '../conn.js';
import type { Options } from '../options.js';
import type { NodeChild } from '../procs.js';
import type { Row, ScenarioResult } from '../report.js';
import { HOST, startEcho, startParley, type BenchEnv } from '../setup.js';
import { runPool, sleep, within } from '../stats.js';

interface Measured {
  kbPerConn: number;
  rssBeforeKb: number;
  rssAfterKb: number;
  /** The same growth read before the forced GC: what a monitoring tool would see. */
  kbPerConnNoGc: number;
  heapPerConnBytes: number;
  openSeconds: number;
  droppedWhileIdle: number;
}

/**
 * Opens `warm` connections first and reads RSS only then: the first connections pull in code,
 * JIT output and TLS contexts that every later one shares, and that is not per-session memory.
 */
async function measure(child: NodeChild, o: Options, warm: number, open: (i: number) => Promise<Conn>): Promise<Measured> {
  const conns: Conn[] = [];
  try {
    conns.push(...(await runPool(warm, o.concurrency, open)));
    await sleep(o.settleMs);
    const before = await child.gc();
    await sleep(500);
    const rssBeforeKb = child.rssKb();
    const t0 = Date.now();
    conns.push(...(await runPool(o.sessions, o.concurrency, (i) => open(warm + i))));
    const openSeconds = (Date.now() - t0) / 1000;
    await sleep(o.settleMs);
    const rssNoGcKb = child.rssKb();
    const after = await child.gc();
    await sleep(500);
    const rssAfterKb = child.rssKb();
    return {
      kbPerConn: (rssAfterKb - rssBeforeKb) / o.sessions,
      rssBeforeKb,
      rssAfterKb,
      kbPerConnNoGc: (rssNoGcKb - rssBeforeKb) / o.sessions,
      heapPerConnBytes: (after.heapUsed - before.heapUsed) / o.sessions,
      openSeconds,
      droppedWhileIdle: conns.filter((c) => c.closed).length,
    };
  } finally {
    for (const c of conns) c.destroy();
  }
}

export async function idle(env: BenchEnv, o: Options, roster: boolean): Promise<ScenarioResult> {
  const warm = Math.min(50, Math.max(5, Math.round(o.sessions / 20)));
  const limitMs = 60_000 + o.sessions * 100;

  env.log(`idle: ${o.sessions} XMPP sessions (after ${warm} warm-up ones)…`);
  const server = await startParley(env);
  let parley: Measured;
  try {
    parley = await within(limitMs, 'idle sessions (parley)', measure(server, o, warm, (i) => XmppClient.login({
      port: server.port,
      host: HOST,
      user: env.users[i % env.users.length]!,
      password: env.password,
      keys: env.keys,
      roster,
      presence: true,
    })));
  } finally {
    await server.stop();
  }

  env.log(`idle: ${o.sessions} TLS connections to the echo server…`);
  const echo = await startEcho(env);
  let base: Measured;
  try {
    base = await within(limitMs, 'idle connections (echo)', measure(echo, o, warm, async () => {
      const c = await EchoClient.connect(echo.port);
      await c.roundTrip();
      return c;
    }));
  } finally {
    await echo.stop();
  }

  const rows: Row[] = [{ metric: 'server RSS per idle session', unit: 'KB', parley: parley.kbPerConn, baseline: base.kbPerConn, target: { op: '<=', value: 35 } }];
  const dropped = parley.droppedWhileIdle + base.droppedWhileIdle;
  return {
    name: 'idle',
    status: 'ok',
    note: [
      `${o.sessions} sessions; RSS read from /proc after a forced full GC in the server`,
      roster ? undefined : 'no roster fetch (roster module not enabled)',
      dropped ? `${dropped} connection(s) closed by the server while idle` : undefined,
      server.logNote(),
    ].filter(Boolean).join('; '),
    rows,
    details: { sessions: o.sessions, warmup: warm, roster, parley, baseline: base },
  };
}
