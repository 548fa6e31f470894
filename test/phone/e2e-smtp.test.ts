// End to end through a real SMTP server standing in for the email-to-SMS gateway (issue 5
// acceptance): GET /authentication sends the SMS as an email, the PIN is read from what the SMTP
// server received, POST /password creates the account, and real clients log in with SCRAM
// (slixmpp, and an independent SCRAM client). Then a second device registers the same number:
// the first device's session ends with a stream error and the old password is refused.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { SMTPServer } from 'smtp-server';
import t, { type Test } from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { tlsLogin } from '../helpers/scram-client.js';
import { startTestServer } from '../helpers/server.js';

interface Mail {
  from: string;
  to: string[];
  raw: string;
}

// The SMS gateway: a local SMTP server. Its built-in certificate has expired, so STARTTLS is off
// (the phone module is configured with security: none for this relay).
const inbox: Mail[] = [];
let waiter: ((m: Mail) => void) | undefined;
const smtp = new SMTPServer({
  disabledCommands: ['STARTTLS', 'AUTH'],
  authOptional: true,
  logger: false,
  onData(stream, session, callback) {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const mail: Mail = {
        from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
        to: session.envelope.rcptTo.map((r) => r.address),
        raw: Buffer.concat(chunks).toString('utf8'),
      };
      callback();
      if (waiter) {
        const w = waiter;
        waiter = undefined;
        w(mail);
      } else inbox.push(mail);
    });
  },
});
await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
t.teardown(() => new Promise<void>((resolve) => smtp.close(resolve)));
const smtpPort = (smtp.server.address() as AddressInfo).port;

function nextMail(timeoutMs = 10_000): Promise<Mail> {
  const queued = inbox.shift();
  if (queued) return Promise.resolve(queued);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no mail reached the SMTP server')), timeoutMs);
    waiter = (m) => {
      clearTimeout(timer);
      resolve(m);
    };
  });
}

/** The PIN in the mail's body (headers hold digits of their own). */
function pinOf(mail: Mail): string {
  const body = mail.raw.slice(mail.raw.indexOf('\r\n\r\n') + 4);
  const pin = /\b(\d{6})\b/.exec(body)?.[1];
  if (!pin) throw new Error(`no PIN in ${body}`);
  return pin;
}

// slixmpp always sends channel-binding data it can compute, so the server offers no -PLUS
// mechanism here (as in test/interop/slixmpp.test.ts) and slixmpp uses plain SCRAM.
const srv = await startTestServer({
  auth: '  channel_binding: []',
  modules: [
    '  disco: {}',
    '  roster: {}',
    '  presence: {}',
    '  phone:',
    '    throttle:',
    '      number: [{window: 1m, max: 5}]',
    '    sms:',
    '      smtp:',
    '        host: 127.0.0.1',
    `        port: ${smtpPort}`,
    '        security: none',
    '      from: sms@{host}',
    "      to: '{digits}@gateway.test'",
    "      text: 'Code {pin} for {host}'",
    '      app_hash: FA+9qCX9VSu',
  ].join('\n'),
});
t.teardown(() => srv.close());
await srv.register('bob', 'pw');

const NUMBER = '+4915112345678';
const base = `http://127.0.0.1:${srv.httpPort}/api`;
const headers = { 'User-Agent': 'Quicksy/2.10.0', 'Installation-Id': randomUUID(), 'Accept-Language': 'en-GB' };

async function registerDevice(t: Test, password: string): Promise<number> {
  const got = await fetch(`${base}/authentication/${encodeURIComponent(NUMBER)}`, { headers });
  if (got.status !== 200) throw new Error(`GET: ${got.status}`);
  const mail = await nextMail();
  t.same(mail.to, ['4915112345678@gateway.test'], 'the gateway address is made from the number');
  t.equal(mail.from, 'sms@localhost');
  const body = mail.raw.slice(mail.raw.indexOf('\r\n\r\n') + 4);
  t.match(body, /Code \d{6} for localhost\r?\nFA\+9qCX9VSu/, 'the text, ending with the app hash');
  const auth = Buffer.from(`\0${NUMBER}\0${pinOf(mail)}`).toString('base64');
  const posted = await fetch(`${base}/password`, { method: 'POST', headers: { ...headers, Authorization: auth }, body: password });
  return posted.status;
}

const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const chatScript = fileURLToPath(new URL('../fixtures/slix_chat.py', import.meta.url));

t.test('SMS through SMTP, account by PIN, SCRAM logins; a second device replaces the first', async (t) => {
  t.equal(await registerDevice(t, 'first device pw'), 201, 'account created');

  // A real client library logs in with SCRAM-SHA-256 and chats.
  const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'b' });
  const child = new Promise<{ code: number; out: string }>((resolve) => {
    execFile(python, [chatScript, String(srv.c2sPort), `${NUMBER}@localhost/slix`, 'first device pw', 'SCRAM-SHA-256', 'bob@localhost/b', 'hello from a phone number'],
      { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
  });
  const msg = await bob.next((el) => el.name === 'message' && el.getChildText('body') !== null, 25_000);
  t.equal(msg.attrs.from, `${NUMBER}@localhost/slix`);
  bob.send(`<message to='${NUMBER}@localhost/slix' type='chat'><body>hi</body></message>`);
  const { code, out } = await child;
  t.equal(code, 0, out);
  bob.end();

  const scram = await tlsLogin({ port: srv.c2sPort, mechanism: 'SCRAM-SHA-256', user: NUMBER, password: 'first device pw' });
  t.ok(scram.ok && scram.verified, 'an independent SCRAM client logs in and verifies the server');

  const firstDevice = await RawClient.login(srv.c2sPort, NUMBER, 'first device pw', { resource: 'first' });
  t.equal(await registerDevice(t, 'second device pw'), 200, 'the second device takes the number over');
  t.equal(await firstDevice.streamError(), 'reset', 'the first device is logged out');
  const old = await tlsLogin({ port: srv.c2sPort, mechanism: 'SCRAM-SHA-256', user: NUMBER, password: 'first device pw' });
  t.notOk(old.ok, 'the old password is refused');
  t.equal(old.condition, 'not-authorized');
  const fresh = await tlsLogin({ port: srv.c2sPort, mechanism: 'SCRAM-SHA-1', user: NUMBER, password: 'second device pw' });
  t.ok(fresh.ok && fresh.verified, 'the new password works (every SCRAM family was derived)');
});
