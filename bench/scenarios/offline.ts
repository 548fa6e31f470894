// Offline spool (DESIGN §10: ≥ 5,000 messages/s store + deliver + ack-delete, embedded driver).
// Runs only once the `offline` module is in the server's catalog. A sender sends M messages to a
// user with no session; a ping after them returns once the session has handled (stored) them
// all, since a session handles its stanzas in order. The user then logs in, with stream
// management when the `smacks` module exists, sends initial presence, receives the M messages
// and acknowledges them; a ping after the ack closes the clock. A second login then checks that
// the acknowledged messages were deleted. There is no baseline: the echo server has no spool.
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

export async function offline(env: BenchEnv, o: Options, roster: boolean): Promise<ScenarioResult> {
  if (!catalogHas('offline')) {
    return { name: 'offline', status: 'skipped', note: 'offline module not available', rows: [], details: {} };
  }
  const sm = catalogHas('smacks');
  const m = o.offlineMessages;
  // The spool refuses what exceeds its per-user quota (1000 by default), so it is raised to hold
  // the whole run; the delivery window and the ack cadence keep their defaults, as deployed.
  const modules = { ...env.modules, offline: { max_messages: m + 10 }, ...(sm ? { smacks: {} } : {}) };
  const [senderUser, receiverUser] = [env.users[0]!, env.users[1]!];
  env.log(`offline: ${m} messages through the spool${sm ? ' with stream management' : ''}…`);

  const server = await startParley(env, modules);
  const clients: XmppClient[] = [];
  try {
    return await within(120_000 + m * 20, 'offline spool', (async () => {
      const login = async (user: string, streamManagement: boolean) => {
        const c = await XmppClient.login({
          port: server.port, host: HOST, user, password: env.password, keys: env.keys, roster, presence: false, streamManagement,
        });
        clients.push(c);
        return c;
      };
      const sender = await login(senderUser, false);
      const pad = 'x'.repeat(Math.max(0, o.bodyBytes - 8));
      const t0 = performance.now();
      let batch = '';
      for (let i = 0; i < m; i++) {
        batch += `<message to='${receiverUser}@${HOST}' type='chat' id='o${i}'><body>${String(i).padStart(7, '0')} ${pad}</body></message>`;
        // Written in slices so the socket's own backpressure applies.
        if (batch.length > 32_768 || i === m - 1) {
          sender.send(batch);
          batch = '';
        }
      }
      await ping(sender, 'stored');
      const storeMs = performance.now() - t0;

      const receiver = await login(receiverUser, sm);
      let got = 0;
      const allIn = new Promise<void>((resolve) => {
        receiver.stream((xml) => {
          // The spool keeps at most `window` messages unacknowledged per session and the server
          // asks with <r/> every few stanzas: answering, as a real client does, is what lets the
          // next ones come (and what makes the server delete the acknowledged ones).
          if (sm && xml.startsWith('<r') && elementName(xml) === 'r') {
            receiver.send(`<a xmlns='urn:xmpp:sm:3' h='${receiver.stanzasSinceEnable}'/>`);
            return;
          }
          if (elementName(xml) === 'message' && (attr(xml, 'id') ?? '').startsWith('o') && ++got === m) resolve();
        });
      });
      const t1 = performance.now();
      receiver.send('<presence/>');
      await allIn;
      if (sm) receiver.send(`<a xmlns='urn:xmpp:sm:3' h='${receiver.stanzasSinceEnable}'/>`);
      receiver.onElement = undefined;
      await ping(receiver, 'acked');
      const deliverMs = performance.now() - t1;
      receiver.close();

      // Whatever comes again on a fresh session was not deleted after the acknowledgement.
      await sleep(500);
      const again = await login(receiverUser, false);
      let redelivered = 0;
      again.stream((xml) => {
        if (elementName(xml) === 'message' && (attr(xml, 'id') ?? '').startsWith('o')) redelivered++;
      });
      again.send('<presence/>');
      await sleep(1000);

      const perSecond = (m / (storeMs + deliverMs)) * 1000;
      return {
        name: 'offline',
        status: 'ok' as const,
        note: [
          `${m} messages; store ${((m / storeMs) * 1000).toFixed(0)}/s, deliver${sm ? ' + ack' : ''} ${((m / deliverMs) * 1000).toFixed(0)}/s`,
          sm ? undefined : 'smacks module not available: no XEP-0198 acknowledgement',
          redelivered ? `${redelivered} message(s) delivered again on the next login` : undefined,
          server.logNote(),
        ].filter(Boolean).join('; '),
        rows: [{ metric: 'spooled messages per second', unit: '/s', parley: perSecond, target: { op: '>=' as const, value: 5000 } }],
        details: { messages: m, streamManagement: sm, storeMs, deliverMs, redelivered },
      };
    })());
  } finally {
    for (const c of clients) c.destroy();
    await server.stop();
  }
}
