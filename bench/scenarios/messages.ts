// Routed 1:1 messages over TLS (DESIGN §10: ≥ 20,000/s, p99 ≤ 50 ms, no stall > 100 ms).
// P sender/receiver pairs, each with W messages in flight: when a receiver gets a message, its
// sender sends the next one (a closed loop, so the offered load follows what the server can
// take). The body carries the send time, read back on arrival for the latency.
// The server's own event-loop stalls cannot be seen from outside, so a separate session pings
// the server every 20 ms (one ping outstanding at a time) and the longest round trip stands for
// them. The baseline runs the same stanzas, the same concurrency and the same probe against the
// echo server: one TLS connection per pair that gets each message back.
import { EchoClient, XmppClient, type Conn } from '../conn.js';
import type { Options } from '../options.js';
import type { NodeChild } from '../procs.js';
import type { ScenarioResult } from '../report.js';
import { HOST, startEcho, startParley, type BenchEnv } from '../setup.js';
import { Latency, LoopStall, cpuMeter, runPool, sleep, within } from '../stats.js';
import { attr } from '../xml-split.js';

const PROBE_INTERVAL_MS = 20;

interface Lane {
  sender: Conn;
  /** The stanza up to the timestamp in the body, and what follows the body text. */
  head: string;
}

interface Measured {
  perSecond: number;
  messages: number;
  seconds: number;
  latency: ReturnType<Latency['summary']>;
  probe: ReturnType<Latency['summary']>;
  benchStallMs: number;
  serverCpuPercent: number;
  /** Server CPU time per message: steadier than the rate on a machine shared with other work. */
  serverCpuUsPerMessage: number;
  benchCpuPercent: number;
  errors: number;
  lost: number;
}

/** Pings over its own connection, one at a time, and keeps the round trips. */
class Probe {
  readonly rtt = new Latency();
  private outstanding: { id: string; t: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private n = 0;
  private longestOpen = 0;

  constructor(private readonly conn: Conn) {
    conn.stream((xml) => {
      const o = this.outstanding;
      if (o && attr(xml, 'id') === o.id) {
        this.rtt.recordMs(performance.now() - o.t);
        this.outstanding = undefined;
      }
    });
  }

  start(): void {
    this.timer = setInterval(() => {
      if (this.outstanding) return;
      const id = `probe${++this.n}`;
      this.outstanding = { id, t: performance.now() };
      this.conn.send(`<iq type='get' to='${HOST}' id='${id}'><ping xmlns='urn:xmpp:ping'/></iq>`);
    }, PROBE_INTERVAL_MS);
  }

  /** Stops; a ping still unanswered counts with its age so far, as the stall is still going. */
  stop(): ReturnType<Latency['summary']> {
    clearInterval(this.timer);
    if (this.outstanding) this.longestOpen = performance.now() - this.outstanding.t;
    const s = this.rtt.summary();
    return { ...s, max: Math.max(Number.isNaN(s.max) ? 0 : s.max, this.longestOpen) };
  }
}

async function drive(child: NodeChild, o: Options, lanes: Lane[], receivers: Conn[], probe: Probe): Promise<Measured> {
  const pad = 'x'.repeat(o.bodyBytes);
  const tail = '</body></message>';
  let phase: 'warmup' | 'measure' | 'drain' = 'warmup';
  let inFlight = 0;
  let measured = 0;
  let errors = 0;
  const latency = new Latency();
  let endMeasure: () => void = () => undefined;
  let drained: () => void = () => undefined;

  const send = (lane: Lane) => {
    const ts = performance.now().toFixed(3);
    // The body is exactly bodyBytes long: timestamp, a space, padding.
    lane.sender.send(lane.head + ts + ' ' + pad.slice(ts.length + 1) + tail);
    inFlight++;
  };

  receivers.forEach((conn, i) => {
    const lane = lanes[i]!;
    conn.stream((xml) => {
      if (!xml.startsWith('<message')) return;
      inFlight--;
      const b = xml.indexOf('<body>');
      if (b < 0 || attr(xml, 'type') === 'error') {
        errors++;
      } else if (phase === 'measure') {
        latency.recordMs(performance.now() - Number(xml.slice(b + 6, xml.indexOf(' ', b + 6))));
        if (++measured === o.messages) endMeasure();
      }
      if (phase !== 'drain') send(lane);
      else if (inFlight === 0) drained();
    });
  });

  for (const lane of lanes) for (let k = 0; k < o.window; k++) send(lane);
  await sleep(o.warmupMs);

  const stall = new LoopStall();
  const benchCpu = cpuMeter();
  const cpu0 = child.cpuMs();
  stall.start();
  probe.start();
  phase = 'measure';
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, o.durationMs);
    endMeasure = () => {
      clearTimeout(timer);
      resolve();
    };
  });
  phase = 'drain';
  const ms = performance.now() - t0;
  const count = measured;
  const benchStallMs = stall.stopMs();
  const probeSummary = probe.stop();
  const serverCpuMs = child.cpuMs() - cpu0;
  const benchCpuPercent = benchCpu();

  // Let what is in flight arrive, so a loss shows up as a count rather than a hang.
  if (inFlight > 0) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 10_000);
      drained = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  return {
    perSecond: (count / ms) * 1000,
    messages: count,
    seconds: ms / 1000,
    latency: latency.summary(),
    probe: probeSummary,
    benchStallMs,
    serverCpuPercent: (serverCpuMs / ms) * 100,
    serverCpuUsPerMessage: count > 0 ? (serverCpuMs * 1000) / count : NaN,
    benchCpuPercent,
    errors,
    lost: inFlight,
  };
}

export async function messages(env: BenchEnv, o: Options, roster: boolean): Promise<ScenarioResult> {
  const limitMs = 120_000 + o.durationMs + o.warmupMs;
  const pairs = o.pairs;
  if (env.users.length < 2 * pairs + 1) throw new Error(`messages needs ${2 * pairs + 1} users, ${env.users.length} were created`);
  const messageHead = (to: string, i: number) => `<message to='${to}' type='chat' id='m${i}'><body>`;

  env.log(`messages: ${pairs} pairs × ${o.window} in flight, ${o.warmupMs / 1000} s warm-up + ${o.durationMs / 1000} s measured…`);
  const server = await startParley(env);
  let parley: Measured;
  const open: Conn[] = [];
  try {
    parley = await within(limitMs, 'routed messages (parley)', (async () => {
      const login = (user: string) => XmppClient.login({
        port: server.port, host: HOST, user, password: env.password, keys: env.keys, roster, presence: true,
      });
      const clients = await runPool(2 * pairs + 1, o.concurrency, (i) => login(env.users[i]!));
      open.push(...clients);
      const target = (c: XmppClient) => (o.address === 'full' ? c.jid : c.jid.split('/')[0]!);
      const lanes = Array.from({ length: pairs }, (_, i) => ({ sender: clients[2 * i]!, head: messageHead(target(clients[2 * i + 1]!), i) }));
      const receivers = Array.from({ length: pairs }, (_, i) => clients[2 * i + 1]!);
      return drive(server, o, lanes, receivers, new Probe(clients[2 * pairs]!));
    })());
  } finally {
    for (const c of open) c.destroy();
    open.length = 0;
    await server.stop();
  }

  env.log(`messages: the same against the echo server…`);
  const echo = await startEcho(env);
  let base: Measured;
  try {
    base = await within(limitMs, 'echoed messages (echo)', (async () => {
      const conns = await runPool(pairs + 1, o.concurrency, () => EchoClient.connect(echo.port));
      open.push(...conns);
      // Same bytes as the XMPP senders write (a bound resource is 12 hex digits long).
      const lanes = Array.from({ length: pairs }, (_, i) => ({
        sender: conns[i]!,
        head: messageHead(`${env.users[2 * i + 1]}@${HOST}${o.address === 'full' ? '/' + '0'.repeat(12) : ''}`, i),
      }));
      return drive(echo, o, lanes, conns.slice(0, pairs), new Probe(conns[pairs]!));
    })());
  } finally {
    for (const c of open) c.destroy();
    await echo.stop();
  }

  const problems = [
    parley.errors ? `${parley.errors} message error(s) from the server` : undefined,
    parley.lost ? `${parley.lost} message(s) never arrived` : undefined,
    server.logNote(),
  ].filter(Boolean);
  return {
    name: 'messages',
    status: 'ok',
    note: [
      `${pairs} pairs × ${o.window} in flight, ${o.bodyBytes}-byte bodies to ${o.address} JIDs, ${(parley.seconds).toFixed(1)} s measured`,
      `CPU: server ${parley.serverCpuPercent.toFixed(0)}% / echo ${base.serverCpuPercent.toFixed(0)}% of a core, load generator ${parley.benchCpuPercent.toFixed(0)}% / ${base.benchCpuPercent.toFixed(0)}%`,
      ...problems,
    ].join('; '),
    rows: [
      { metric: 'routed messages per second', unit: '/s', parley: parley.perSecond, baseline: base.perSecond, target: { op: '>=', value: 20_000 } },
      { metric: 'server CPU per message', unit: 'µs', parley: parley.serverCpuUsPerMessage, baseline: base.serverCpuUsPerMessage },
      { metric: 'latency p50', unit: 'ms', parley: parley.latency.p50, baseline: base.latency.p50 },
      { metric: 'latency p99', unit: 'ms', parley: parley.latency.p99, baseline: base.latency.p99, target: { op: '<=', value: 50 } },
      { metric: 'latency max', unit: 'ms', parley: parley.latency.max, baseline: base.latency.max },
      { metric: 'server stall (max ping RTT)', unit: 'ms', parley: parley.probe.max, baseline: base.probe.max, target: { op: '<=', value: 100 } },
      { metric: 'load generator loop stall max', unit: 'ms', parley: parley.benchStallMs, baseline: base.benchStallMs, target: { op: '<=', value: 100 } },
    ],
    details: { pairs, window: o.window, bodyBytes: o.bodyBytes, address: o.address, roster, parley, baseline: base },
  };
}
