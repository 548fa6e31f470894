// MUC fan-out (issue 7): groupchat messages delivered per second to a room of N occupants, for
// each N of --muc-occupants (default 100 and 1000). Every occupant is its own session of its own
// user. A few occupants send; each keeps W messages "open", a message being open until every
// occupant (the sender too: a room reflects a message to its sender) has received it, and the
// last arrival makes its sender send the next one. The loop is closed, so the offered load
// follows what the server can push out. The figure is deliveries per second (occupants ×
// messages received), with the latency of each delivery (the body carries the send time).
// The baseline is fanout-server.ts: a plain TLS server that writes each message it reads to
// every connection. Its sender pads the body so that each connection receives as many bytes per
// message as Parley delivered in the same run, so both sides push the same bytes to the same
// number of sockets and only the work per delivery differs.
import { EchoClient, XmppClient, type Conn } from '../conn.js';
import type { Options } from '../options.js';
import type { NodeChild } from '../procs.js';
import type { Row, ScenarioResult } from '../report.js';
import { HOST, catalogHas, startFanout, startParley, type BenchEnv, type Modules } from '../setup.js';
import { Latency, LoopStall, cpuMeter, runPool, sleep, within } from '../stats.js';
import { attr, elementName } from '../xml-split.js';

const SERVICE = `conference.${HOST}`;
const NS_MUC = 'http://jabber.org/protocol/muc';
const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';

interface Measured {
  occupants: number;
  deliveriesPerSecond: number;
  /** Messages received by every occupant, per second. */
  messagesPerSecond: number;
  deliveries: number;
  seconds: number;
  latency: ReturnType<Latency['summary']>;
  serverCpuPercent: number;
  serverCpuUsPerDelivery: number;
  benchCpuPercent: number;
  benchStallMs: number;
  /** Average length of one delivered stanza, in characters (all ASCII here, so bytes). */
  deliveredBytes: number;
  /** Messages still missing at one or more occupants after the drain. */
  incomplete: number;
  errors: number;
  joinSeconds: number;
}

interface Sender {
  conn: Conn;
  /** The stanza up to the body text, and the padding that brings it to the wanted length. */
  head: string;
  pad: string;
}

/**
 * Runs the closed loop over `receivers` (every occupant, senders included) for warm-up plus the
 * measured time. Messages are told apart by a key in the body, not by id: the id is the
 * sender's and the room may rewrite anything else.
 */
async function drive(child: NodeChild, o: Options, receivers: Conn[], senders: Sender[]): Promise<Omit<Measured, 'joinSeconds' | 'occupants'>> {
  const n = receivers.length;
  const tail = '</body></message>';
  const open = new Map<string, number>();
  const inFlight = senders.map(() => 0);
  const seq = senders.map(() => 0);
  let phase: 'warmup' | 'measure' | 'drain' = 'warmup';
  let deliveries = 0;
  let completed = 0;
  let bytes = 0;
  let errors = 0;
  const latency = new Latency();
  let drained: () => void = () => undefined;

  const send = (s: number) => {
    const sender = senders[s]!;
    const ts = performance.now().toFixed(3);
    const key = `k${s}.${seq[s]!++}`;
    open.set(key, n);
    inFlight[s]!++;
    // Body: send time, key, padding; the baseline's padding makes the delivered bytes equal.
    sender.conn.send(`${sender.head}${ts} ${key} ${sender.pad}${tail}`);
  };

  const onXml = (xml: string) => {
    if (!xml.startsWith('<message')) return;
    if (attr(xml, 'type') === 'error') {
      errors++;
      return;
    }
    const b = xml.indexOf('<body>');
    if (b < 0) return;
    const sp1 = xml.indexOf(' ', b + 6);
    const sp2 = xml.indexOf(' ', sp1 + 1);
    const key = xml.slice(sp1 + 1, sp2);
    const left = open.get(key);
    if (left === undefined) return;
    if (phase === 'measure') {
      latency.recordMs(performance.now() - Number(xml.slice(b + 6, sp1)));
      deliveries++;
      bytes += xml.length;
    }
    if (left > 1) {
      open.set(key, left - 1);
      return;
    }
    open.delete(key);
    if (phase === 'measure') completed++;
    const s = Number(key.slice(1, key.indexOf('.')));
    inFlight[s]!--;
    if (phase !== 'drain') send(s);
    else if (open.size === 0) drained();
  };
  for (const r of receivers) r.stream(onXml);

  senders.forEach((_, s) => {
    for (let k = 0; k < o.mucWindow; k++) send(s);
  });
  await sleep(o.warmupMs);

  const stall = new LoopStall();
  const benchCpu = cpuMeter();
  const cpu0 = child.cpuMs();
  stall.start();
  phase = 'measure';
  const t0 = performance.now();
  await sleep(o.durationMs);
  phase = 'drain';
  const ms = performance.now() - t0;
  const serverCpuMs = child.cpuMs() - cpu0;
  const benchCpuPercent = benchCpu();
  const benchStallMs = stall.stopMs();

  // What is still open either arrives (then it was slow, not lost) or counts as incomplete.
  if (open.size > 0) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 15_000);
      drained = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
  return {
    deliveriesPerSecond: (deliveries / ms) * 1000,
    messagesPerSecond: (completed / ms) * 1000,
    deliveries,
    seconds: ms / 1000,
    latency: latency.summary(),
    serverCpuPercent: (serverCpuMs / ms) * 100,
    serverCpuUsPerDelivery: deliveries > 0 ? (serverCpuMs * 1000) / deliveries : NaN,
    benchCpuPercent,
    benchStallMs,
    deliveredBytes: deliveries > 0 ? bytes / deliveries : NaN,
    incomplete: open.size,
    errors,
  };
}

/** Parley: N users log in and join one instant room; the first creates and unlocks it. */
async function parleyRoom(env: BenchEnv, o: Options, roster: boolean, server: NodeChild, size: number, clients: XmppClient[]): Promise<Measured> {
  const room = `fanout${size}@${SERVICE}`;
  const login = async (i: number) => {
    const c = await XmppClient.login({
      port: server.port, host: HOST, user: env.users[i]!, password: env.password, keys: env.keys, roster, presence: false,
    });
    clients.push(c);
    return c;
  };
  const isSelf = (xml: string) => elementName(xml) === 'presence'
    && (attr(xml, 'type') === 'error' || (attr(xml, 'from') === `${room}/u0` && /code=['"]110['"]/.test(xml)));
  const t0 = performance.now();

  // The creator: XEP-0045 §10.1.2, an instant room is unlocked by submitting an empty form.
  const creator = await login(0);
  creator.send(`<presence to='${room}/u0'><x xmlns='${NS_MUC}'/></presence>`);
  const created = await creator.next(isSelf, 'room creation');
  if (attr(created, 'type') === 'error') throw new Error(`room creation refused: ${created}`);
  creator.send(`<iq type='set' to='${room}' id='unlock'><query xmlns='${NS_MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query></iq>`);
  const unlocked = await creator.next((x) => attr(x, 'id') === 'unlock', 'room unlock');
  if (attr(unlocked, 'type') !== 'result') throw new Error(`room unlock failed: ${unlocked}`);
  // From here on every occupant receives one presence per later join: nothing may pile up in
  // an inbox, so each session only looks for its own self-presence.
  creator.stream(() => undefined);

  await runPool(size - 1, o.concurrency, async (k) => {
    const i = k + 1;
    const c = await login(i);
    const self = `${room}/u${i}`;
    const joined = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`u${i} did not get its self-presence in 60 s`)), 60_000);
      c.stream((xml) => {
        if (elementName(xml) !== 'presence') return;
        if (attr(xml, 'type') === 'error') {
          clearTimeout(timer);
          reject(new Error(`join of u${i} refused: ${xml}`));
        } else if (attr(xml, 'from') === self && /code=['"]110['"]/.test(xml)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    c.send(`<presence to='${self}'><x xmlns='${NS_MUC}'/></presence>`);
    await joined;
  });
  const joinSeconds = (performance.now() - t0) / 1000;
  // The last joins' presences are still being fanned out; let that settle before measuring.
  await sleep(1000);

  const senders = clients.slice(0, o.mucSenders).map((conn, s) => ({
    conn, head: `<message to='${room}' type='groupchat' id='g${s}'><body>`, pad: 'x'.repeat(Math.max(0, o.bodyBytes - 32)),
  }));
  const m = await drive(server, o, clients, senders);
  return { ...m, occupants: size, joinSeconds };
}

/** Baseline: N TLS connections to the fan-out server; the senders pad to Parley's delivered size. */
async function baselineRoom(o: Options, fan: NodeChild, size: number, deliveredBytes: number, conns: Conn[]): Promise<Measured> {
  const t0 = performance.now();
  await runPool(size, o.concurrency, async () => {
    const c = await EchoClient.connect(fan.port);
    conns.push(c);
    c.stream(() => undefined);
  });
  const joinSeconds = (performance.now() - t0) / 1000;
  const head = (s: number) => `<message to='fanout${size}@${SERVICE}' type='groupchat' id='g${s}'><body>`;
  // What one connection receives is what the sender wrote: head, "<ts> <key> ", pad, tail.
  // Timestamps and keys are about 24 characters, as in the Parley run.
  const senders = conns.slice(0, o.mucSenders).map((conn, s) => {
    const fixed = head(s).length + 24 + '</body></message>'.length;
    return { conn, head: head(s), pad: 'x'.repeat(Math.max(0, Math.round(deliveredBytes) - fixed)) };
  });
  const m = await drive(fan, o, conns, senders);
  return { ...m, occupants: size, joinSeconds };
}

export async function muc(env: BenchEnv, o: Options, roster: boolean): Promise<ScenarioResult> {
  if (!catalogHas('muc')) return { name: 'muc', status: 'skipped', note: 'muc module not available', rows: [], details: {} };
  const largest = Math.max(...o.mucOccupants);
  if (env.users.length < largest) throw new Error(`muc needs ${largest} users, ${env.users.length} were created`);
  // The room must hold every occupant, and the per-occupant flood limit (10 per 10 s by
  // default) would measure the limiter instead of the fan-out; everything else is as shipped
  // (archiving on, history kept, fan-out batches of 64).
  const shipped = (env.modules.muc && typeof env.modules.muc === 'object' ? env.modules.muc : {}) as Record<string, unknown>;
  const modules: Modules = {
    ...env.modules,
    muc: { ...shipped, max_users: largest + 10, max_users_limit: largest + 10, message_rate: 0 },
  };

  const rows: Row[] = [];
  const notes: string[] = [];
  const details: Record<string, unknown> = { senders: o.mucSenders, window: o.mucWindow, bodyBytes: o.bodyBytes, roster };
  for (const size of o.mucOccupants) {
    const limitMs = 180_000 + size * 200 + 2 * (o.durationMs + o.warmupMs);
    env.log(`muc: room of ${size}, ${o.mucSenders} sender(s) × ${o.mucWindow} open, ${o.warmupMs / 1000} s warm-up + ${o.durationMs / 1000} s measured…`);
    const server = await startParley(env, modules);
    let parley: Measured;
    const clients: XmppClient[] = [];
    try {
      parley = await within(limitMs, `muc fan-out to ${size} (parley)`, parleyRoom(env, o, roster, server, size, clients));
    } finally {
      for (const c of clients) c.destroy();
      await server.stop();
    }
    env.log(`muc: room of ${size}: ${parley.joinSeconds.toFixed(1)} s to log in and join, ${Math.round(parley.deliveriesPerSecond)} deliveries/s; the same through the fan-out server…`);

    const fan = await startFanout(env);
    let base: Measured;
    const conns: Conn[] = [];
    try {
      base = await within(limitMs, `muc fan-out to ${size} (baseline)`, baselineRoom(o, fan, size, parley.deliveredBytes, conns));
    } finally {
      for (const c of conns) c.destroy();
      await fan.stop();
    }

    rows.push(
      { metric: `${size} occupants: deliveries per second`, unit: '/s', parley: parley.deliveriesPerSecond, baseline: base.deliveriesPerSecond },
      { metric: `${size} occupants: messages to all per second`, unit: '/s', parley: parley.messagesPerSecond, baseline: base.messagesPerSecond },
      { metric: `${size} occupants: server CPU per delivery`, unit: 'µs', parley: parley.serverCpuUsPerDelivery, baseline: base.serverCpuUsPerDelivery },
      { metric: `${size} occupants: delivery latency p50`, unit: 'ms', parley: parley.latency.p50, baseline: base.latency.p50 },
      { metric: `${size} occupants: delivery latency p99`, unit: 'ms', parley: parley.latency.p99, baseline: base.latency.p99 },
    );
    notes.push(
      `${size} occupants: CPU server ${parley.serverCpuPercent.toFixed(0)}% / fan-out ${base.serverCpuPercent.toFixed(0)}% of a core, load generator ${parley.benchCpuPercent.toFixed(0)}% / ${base.benchCpuPercent.toFixed(0)}%; ${Math.round(parley.deliveredBytes)} bytes per delivery`,
      ...[
        parley.incomplete ? `${parley.incomplete} message(s) did not reach every occupant` : undefined,
        parley.errors ? `${parley.errors} error(s) from the room` : undefined,
      ].filter((x): x is string => x !== undefined).map((x) => `${size} occupants: ${x}`),
    );
    details[`occupants${size}`] = { parley, baseline: base };
    const logNote = server.logNote();
    if (logNote) notes.push(logNote);
  }
  return { name: 'muc', status: 'ok', note: notes.join('; '), rows, details };
}
