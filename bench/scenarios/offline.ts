// Offline spool (DESIGN §10: ≥ 5,000 messages/s store + deliver + ack-delete, embedded driver).
// Runs only once the `offline` module is in the server's catalog. P senders each send M/P
// messages to a user of their own who has no session, all at once, as a server's users do; a
// ping after each sender's messages returns once its session has handled (stored) them all,
// since a session handles its stanzas in order. The recipients then log in, with stream
// management when the `smacks` module exists (before the clock starts: logins are measured by the
// logins scenario), send initial presence, receive their messages and acknowledge them; a ping
// after each ack closes the clock. A second login of every recipient
// then checks that the acknowledged messages were deleted. The same is measured with a single
// pair (one sender's stanzas are handled one at a time, each waiting for its commit, so it shows
// the latency-bound floor). There is no baseline: the echo server has no spool.
//
// Warm-up: the concurrent run is done once before it is measured, as the other scenarios warm up
// for a few seconds. The first messages a fresh server process handles run in V8's interpreter
// and pay for the JIT's compilations (on the server's own threads): measured cold, 5,000
// messages cost the server about 1.6 times the CPU of the same run a moment later. That first
// run is still reported, in a row of its own, so a slower start is not hidden.
import { XmppClient } from '../conn.js';
import type { Options } from '../options.js';
import type { ScenarioResult } from '../report.js';
import { HOST, catalogHas, startParley, type BenchEnv } from '../setup.js';
import { sleep, within } from '../stats.js';
import { attr, elementName } from '../xml-split.js';

function ping(c: XmppClient, id: string): Promise<string> {
  c.send(`<iq type='get' to='${HOST}' id='${id}'><ping xmlns='urn:xmpp:ping'/></iq>`);
  return c.next((x) => attr(x, 'id') === id, `ping ${id}`);
}

interface SpoolRun {
  messages: number;
  storeMs: number;
  deliverMs: number;
  /** The server process's CPU time (all its threads) in each phase. */
  storeCpuMs: number;
  deliverCpuMs: number;
  redelivered: number;
}

export async function offline(env: BenchEnv, o: Options, roster: boolean): Promise<ScenarioResult> {
  if (!catalogHas('offline')) {
    return { name: 'offline', status: 'skipped', note: 'offline module not available', rows: [], details: {} };
  }
  const sm = catalogHas('smacks');
  const m = o.offlineMessages;
  const pairs = Math.min(o.offlinePairs, Math.floor(env.users.length / 2), m);
  const perPair = Math.floor(m / pairs);
  // The spool refuses what exceeds its per-user quota (1000 by default), so it is raised to hold
  // the whole run; the delivery window and the ack cadence keep their defaults, as deployed.
  const modules = { ...env.modules, offline: { max_messages: m + 10 }, ...(sm ? { smacks: {} } : {}) };
  env.log(`offline: ${pairs * perPair} messages from ${pairs} senders (twice: a cold run, then the measured one), then ${m} from one, through the spool${sm ? ' with stream management' : ''}…`);

  const server = await startParley(env, modules);
  const clients: XmppClient[] = [];
  const login = async (user: string, streamManagement: boolean) => {
    const c = await XmppClient.login({
      port: server.port, host: HOST, user, password: env.password, keys: env.keys, roster, presence: false, streamManagement,
    });
    clients.push(c);
    return c;
  };
  const pad = 'x'.repeat(Math.max(0, o.bodyBytes - 8));

  /** Sends `count` messages from sender to receiver, written in slices so the socket's backpressure applies. */
  const sendAll = async (sender: XmppClient, receiverUser: string, count: number, tag: string) => {
    let batch = '';
    for (let i = 0; i < count; i++) {
      batch += `<message to='${receiverUser}@${HOST}' type='chat' id='o${i}'><body>${String(i).padStart(7, '0')} ${pad}</body></message>`;
      if (batch.length > 32_768 || i === count - 1) {
        sender.send(batch);
        batch = '';
      }
    }
    await ping(sender, `stored-${tag}`);
  };

  /**
   * Receives `count` spooled messages on a logged-in session (without presence yet), acknowledging
   * as a real client does. Initial presence is what starts the delivery.
   */
  const receiveAll = async (receiver: XmppClient, count: number, tag: string) => {
    let got = 0;
    const allIn = new Promise<void>((resolve) => {
      receiver.stream((xml) => {
        // The spool keeps at most `window` messages unacknowledged per session and the server
        // asks with <r/> every few stanzas: answering is what lets the next ones come (and what
        // makes the server delete the acknowledged ones).
        if (sm && xml.startsWith('<r') && elementName(xml) === 'r') {
          receiver.send(`<a xmlns='urn:xmpp:sm:3' h='${receiver.stanzasSinceEnable}'/>`);
          return;
        }
        if (elementName(xml) === 'message' && (attr(xml, 'id') ?? '').startsWith('o') && ++got === count) resolve();
      });
    });
    receiver.send('<presence/>');
    await allIn;
    if (sm) receiver.send(`<a xmlns='urn:xmpp:sm:3' h='${receiver.stanzasSinceEnable}'/>`);
    receiver.onElement = undefined;
    await ping(receiver, `acked-${tag}`);
    receiver.close();
  };

  /** Whatever comes again on a fresh session was not deleted after the acknowledgement. */
  const countRedelivered = async (receiverUsers: string[]) => {
    await sleep(500);
    let redelivered = 0;
    const checks: XmppClient[] = [];
    for (const user of receiverUsers) {
      const again = await login(user, false);
      checks.push(again);
      again.stream((xml) => {
        if (elementName(xml) === 'message' && (attr(xml, 'id') ?? '').startsWith('o')) redelivered++;
      });
      again.send('<presence/>');
    }
    await sleep(1000);
    // Offline again, so the next run's messages go to the spool.
    for (const c of checks) c.close();
    await sleep(200);
    return redelivered;
  };

  const run = async (senderUsers: string[], receiverUsers: string[], count: number): Promise<SpoolRun> => {
    const senders = await Promise.all(senderUsers.map((u) => login(u, false)));
    const t0 = performance.now();
    const cpu0 = server.cpuMs();
    await Promise.all(senders.map((s, i) => sendAll(s, receiverUsers[i]!, count, String(i))));
    const storeMs = performance.now() - t0;
    const storeCpuMs = server.cpuMs() - cpu0;
    // Logged in before the clock starts: the figure is the spool's, not SCRAM's.
    const receivers = await Promise.all(receiverUsers.map((u) => login(u, sm)));
    const t1 = performance.now();
    const cpu1 = server.cpuMs();
    await Promise.all(receivers.map((r, i) => receiveAll(r, count, String(i))));
    const deliverMs = performance.now() - t1;
    const deliverCpuMs = server.cpuMs() - cpu1;
    return {
      messages: count * senderUsers.length, storeMs, deliverMs, storeCpuMs, deliverCpuMs,
      redelivered: await countRedelivered(receiverUsers),
    };
  };

  try {
    return await within(240_000 + m * 40, 'offline spool', (async () => {
      const senders = env.users.slice(0, pairs);
      const receivers = env.users.slice(pairs, 2 * pairs);
      const cold = await run(senders, receivers, perPair);
      const many = await run(senders, receivers, perPair);
      const one = await run([senders[0]!], [receivers[0]!], m);
      const rate = (r: SpoolRun) => (r.messages / (r.storeMs + r.deliverMs)) * 1000;
      const perMessageUs = (cpuMs: number, r: SpoolRun) => ((cpuMs / r.messages) * 1000).toFixed(0);
      const phases = (r: SpoolRun) => `store ${((r.messages / r.storeMs) * 1000).toFixed(0)}/s `
        + `(server CPU ${perMessageUs(r.storeCpuMs, r)} µs/message), deliver${sm ? ' + ack' : ''} `
        + `${((r.messages / r.deliverMs) * 1000).toFixed(0)}/s (${perMessageUs(r.deliverCpuMs, r)} µs/message)`;
      const cpuPerMessage = (r: SpoolRun) => ((r.storeCpuMs + r.deliverCpuMs) / r.messages) * 1000;
      const redelivered = cold.redelivered + many.redelivered + one.redelivered;
      return {
        name: 'offline',
        status: 'ok' as const,
        note: [
          `${pairs} pairs × ${perPair} messages: ${phases(many)}; 1 pair × ${m}: ${phases(one)}; `
            + `first run after the server started (cold JIT, not measured as the figure): ${phases(cold)}`,
          sm ? undefined : 'smacks module not available: no XEP-0198 acknowledgement',
          redelivered ? `${redelivered} message(s) delivered again on the next login` : undefined,
          server.logNote(),
        ].filter(Boolean).join('; '),
        rows: [
          { metric: `spooled messages per second (${pairs} senders)`, unit: '/s', parley: rate(many), target: { op: '>=' as const, value: 5000 } },
          { metric: 'spooled messages per second (1 sender)', unit: '/s', parley: rate(one) },
          { metric: `spooled messages per second (${pairs} senders, cold: first run after start)`, unit: '/s', parley: rate(cold) },
          // Steadier than the rates on a shared machine: the server's own work per message.
          { metric: `server CPU per spooled message (${pairs} senders)`, unit: 'µs', parley: cpuPerMessage(many) },
        ],
        details: { pairs, many, one, cold, streamManagement: sm },
      };
    })());
  } finally {
    for (const c of clients) c.destroy();
    await server.stop();
  }
}
