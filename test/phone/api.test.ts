// The Quicksy-compatible HTTP API of the phone module against a real server: every status of
// GET /authentication/{e164} and POST /password, the throttles with Retry-After, a new device
// replacing the old one, and numbers reassigned after reclaim_after. SMS go to the development
// transport (a file), from which the tests read the PINs.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const dir = mkdtempSync(path.join(tmpdir(), 'parley-phone-api-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const UA = 'Quicksy/2.5.0';

function phoneModules(smsLog: string, extra = ''): string {
  return [
    '  disco: {}',
    '  roster: {}',
    '  presence: {}',
    '  private: {}',
    '  phone:',
    '    min_client_version: 2.0.0',
    '    throttle:',
    '      number: [{window: 1m, max: 2}]',
    '      ip: [{window: 1m, max: 6}]',
    '      installation: [{window: 1m, max: 3}]',
    '      password_ip: [{window: 1m, max: 100}]',
    "    allowed_countries: [DE, '+1']",
    '    sms:',
    `      log_file: ${JSON.stringify(smsLog)}`,
    "      texts: {de: 'Dein Code für {host}: {pin}'}",
    extra,
  ].join('\n');
}

interface Client {
  ip: string;
  installation: string;
  ua?: string;
}

let ipCounter = 0;
/** A client of its own (address and installation), so throttles of one test do not touch another. */
function newClient(): Client {
  ipCounter++;
  return { ip: `192.0.2.${ipCounter}`, installation: randomUUID() };
}

class Api {
  constructor(readonly srv: TestServer, readonly smsLog: string) {}

  url(p: string): string {
    return `http://127.0.0.1:${this.srv.httpPort}/api${p}`;
  }

  authenticate(number: string, c: Client, headers: Record<string, string> = {}): Promise<Response> {
    return fetch(this.url(`/authentication/${encodeURIComponent(number)}`), {
      headers: { 'User-Agent': c.ua ?? UA, 'Installation-Id': c.installation, 'Accept-Language': 'en', 'X-Real-IP': c.ip, ...headers },
    });
  }

  password(number: string, pin: string, password: string, c: Client, o: { leadingNul?: boolean; authorization?: string } = {}): Promise<Response> {
    const auth = o.authorization ?? Buffer.from(`${o.leadingNul === false ? '' : '\0'}${number}\0${pin}`).toString('base64');
    return fetch(this.url('/password'), {
      method: 'POST',
      headers: { 'User-Agent': c.ua ?? UA, 'Installation-Id': c.installation, Authorization: auth, 'X-Real-IP': c.ip },
      body: password,
    });
  }

  /** The PIN of the last SMS to this number. */
  lastPin(number: string): string {
    const lines = existsSync(this.smsLog) ? readFileSync(this.smsLog, 'utf8').split('\n') : [];
    const line = lines.filter((l) => l.split(' ')[1] === number).pop();
    const pin = line && /\b(\d{6})\b/.exec(JSON.parse(line.slice(line.indexOf('"'))) as string)?.[1];
    if (!pin) throw new Error(`no SMS to ${number}`);
    return pin;
  }

  smsCount(number: string): number {
    if (!existsSync(this.smsLog)) return 0;
    return readFileSync(this.smsLog, 'utf8').split('\n').filter((l) => l.split(' ')[1] === number).length;
  }

  /** GET then POST with the PIN from the SMS; the POST's response. */
  async register(number: string, password: string, c: Client = newClient()): Promise<Response> {
    const got = await this.authenticate(number, c);
    if (got.status !== 200) throw new Error(`GET /authentication: ${got.status} ${await got.text()}`);
    return this.password(number, this.lastPin(number), password, c);
  }
}

async function loginFails(port: number, user: string, password: string): Promise<boolean> {
  try {
    const c = await RawClient.login(port, user, password, { presence: false });
    c.end();
    return false;
  } catch (err) {
    return /login failed/.test(String(err));
  }
}

const mainLog = path.join(dir, 'main-sms.log');
const srv = await startTestServer({ modules: phoneModules(mainLog) });
t.teardown(() => srv.close());
const api = new Api(srv, mainLog);

t.test('register a number: GET sends a PIN by SMS, POST with it creates the account (201)', async (t) => {
  const c = newClient();
  const index = await fetch(api.url('/'));
  t.equal(index.status, 200, 'the API answers at its root');
  const got = await api.authenticate('+4915112345678', c);
  t.equal(got.status, 200);
  t.equal(api.smsCount('+4915112345678'), 1, 'one SMS');
  const pin = api.lastPin('+4915112345678');
  t.match(pin, /^\d{6}$/);
  t.notOk(await srv.server.accounts.exists('+4915112345678', 'localhost'), 'no account before the PIN');
  const posted = await api.password('+4915112345678', pin, 'first secret', c);
  t.equal(posted.status, 201, await posted.text());
  t.ok(await srv.server.accounts.exists('+4915112345678', 'localhost'));
  const client = await RawClient.login(srv.c2sPort, '+4915112345678', 'first secret', { resource: 'phone' });
  t.equal(client.jid, '+4915112345678@localhost/phone', 'the E.164 number is the localpart');
  client.end();
  const again = await api.password('+4915112345678', pin, 'other', c);
  t.equal(again.status, 404, 'a PIN works once');
});

t.test('the Authorization header without its leading NUL is accepted too', async (t) => {
  const c = newClient();
  t.equal((await api.authenticate('+4915112345670', c)).status, 200);
  const res = await api.password('+4915112345670', api.lastPin('+4915112345670'), 'pw', c, { leadingNul: false });
  t.equal(res.status, 201);
});

t.test('400 for invalid input', async (t) => {
  const c = newClient();
  const bad = async (res: Response, what: string) => t.equal(res.status, 400, `${what}: ${await res.clone().text()}`);
  await bad(await api.authenticate('+491511234', c), 'a number that cannot exist');
  await bad(await api.authenticate('+49 1511 2345678', c), 'not E.164');
  await bad(await api.authenticate('hello', c), 'not a number');
  await bad(await api.authenticate('+33612345678', c), 'a valid number from a country that is not allowed');
  await bad(await api.authenticate('+4915112345671', { ...c, installation: 'not-a-uuid' }), 'malformed Installation-Id');
  const noInstallation = await fetch(api.url('/authentication/%2B4915112345671'), { headers: { 'User-Agent': UA, 'X-Real-IP': c.ip } });
  await bad(noInstallation, 'no Installation-Id');
  t.equal(api.smsCount('+4915112345671'), 0, 'no SMS for refused requests');
  const c2 = newClient();
  await bad(await api.password('+4915112345671', '123456', 'pw', c2, { authorization: 'not base64!' }), 'malformed Authorization');
  await bad(await api.password('+4915112345671', '12345', 'pw', c2), 'PIN of 5 digits');
  await bad(await api.password('+4915112345671', '123456', '', c2), 'empty password');
  await bad(await api.password('+4915112345671', '123456', 'a\u0007b', c2), 'password SASLprep refuses');
  await bad(await api.password('4915112345671x', '123456', 'pw', c2), 'bad number in Authorization');
  const missing = await fetch(api.url('/password'), { method: 'POST', headers: { 'User-Agent': UA, 'X-Real-IP': c2.ip }, body: 'pw' });
  await bad(missing, 'no Authorization');
  t.equal((await fetch(api.url('/password'), { headers: { 'User-Agent': UA } })).status, 405, 'GET /password');
  t.equal((await fetch(api.url('/nothing'))).status, 404);
});

t.test('403 for outdated or unrecognisable clients', async (t) => {
  const c = newClient();
  for (const ua of ['Quicksy/1.9.9', 'Quicksy', 'curl', 'Quicksy/two']) {
    const res = await api.authenticate('+4915112345672', { ...c, ua });
    t.equal(res.status, 403, ua);
    const pw = await api.password('+4915112345672', '123456', 'pw', { ...c, ua });
    t.equal(pw.status, 403, `${ua} on /password`);
  }
  t.equal((await api.authenticate('+4915112345672', { ...c, ua: 'Quicksy/2.0.0+free' })).status, 200, 'the minimum version with a build suffix passes');
});

t.test('401 for a wrong PIN while attempts remain; the third wrong one invalidates the PIN (then 404)', async (t) => {
  const c = newClient();
  const number = '+4915112345673';
  t.equal((await api.authenticate(number, c)).status, 200);
  const pin = api.lastPin(number);
  const wrong = pin === '000000' ? '111111' : '000000';
  const first = await api.password(number, wrong, 'pw', c);
  t.equal(first.status, 401);
  t.match(await first.text(), /2 attempt/);
  t.equal((await api.password(number, wrong, 'pw', c)).status, 401);
  const third = await api.password(number, wrong, 'pw', c);
  t.equal(third.status, 401, 'the third wrong PIN is still 401');
  t.equal((await api.password(number, pin, 'pw', c)).status, 404, 'even the right PIN is refused now');
  t.notOk(await srv.server.accounts.exists(number, 'localhost'), 'nothing was created');
  t.equal((await api.password('+4915112345674', '123456', 'pw', c)).status, 404, 'a number that never got a PIN');
});

t.test('429 with Retry-After: per number, per installation, per address', async (t) => {
  const number = '+4915112345675';
  const c = newClient();
  t.equal((await api.authenticate(number, c)).status, 200);
  t.equal((await api.authenticate(number, newClient())).status, 200, 'two per window for a number');
  const third = await api.authenticate(number, newClient());
  t.equal(third.status, 429);
  const retry = Number(third.headers.get('retry-after'));
  t.ok(retry > 0 && retry <= 60, `Retry-After ${retry} s is within the 1 min window`);
  t.equal(api.smsCount(number), 2, 'no SMS while throttled');

  const inst = newClient();
  for (const n of ['+4915112345680', '+4915112345681', '+4915112345682']) {
    t.equal((await api.authenticate(n, { ...inst, ip: newClient().ip })).status, 200, `installation request for ${n}`);
  }
  const overInstallation = await api.authenticate('+4915112345683', { ...inst, ip: newClient().ip });
  t.equal(overInstallation.status, 429, 'the fourth SMS for one installation');
  t.ok(Number(overInstallation.headers.get('retry-after')) > 0);
  t.equal(api.smsCount('+4915112345683'), 0);
  t.equal((await api.authenticate('+4915112345683', newClient())).status, 200, 'the number was not counted by the refused request');

  const addr = newClient();
  const statuses: number[] = [];
  for (let i = 0; i < 7; i++) statuses.push((await api.authenticate('+491511234', { ...addr, installation: randomUUID() })).status);
  t.same(statuses, [400, 400, 400, 400, 400, 400, 429], 'every request counts per address, even invalid ones');
});

t.test('a new device takes over: 200, the old sessions end with reset, the old password stops working', async (t) => {
  const number = '+4915112345676';
  t.equal((await api.register(number, 'old password')).status, 201);
  const oldDevice = await RawClient.login(srv.c2sPort, number, 'old password', { resource: 'old' });
  const res = await api.register(number, 'new password');
  t.equal(res.status, 200, 'password changed');
  t.equal(await oldDevice.streamError(), 'reset');
  await oldDevice.closed();
  t.ok(await loginFails(srv.c2sPort, number, 'old password'), 'the old password is refused');
  const newDevice = await RawClient.login(srv.c2sPort, number, 'new password', { resource: 'new' });
  newDevice.end();
});

t.test('500 when the SMS cannot be sent: nothing is created or counted', async (t) => {
  const log = path.join(dir, 'down-sms.log');
  // A port that was just free: nothing listens there.
  const port = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (probe.address() as net.AddressInfo).port;
      probe.close(() => resolve(p));
    });
  });
  const down = await startTestServer({
    modules: phoneModules(log, ['      smtp:', '        host: 127.0.0.1', `        port: ${port}`, '        security: none', '        timeout: 2s'].join('\n')),
  });
  t.teardown(() => down.close());
  const dapi = new Api(down, log);
  const c = newClient();
  const number = '+4915112345677';
  const first = await dapi.authenticate(number, c);
  t.equal(first.status, 500);
  const second = await dapi.authenticate(number, c);
  t.equal(second.status, 500, 'the failed attempt did not count against the number (no 429)');
  t.equal((await dapi.password(number, '123456', 'pw', c)).status, 404, 'no PIN was kept');
  t.notOk(await down.server.accounts.exists(number, 'localhost'), 'no account');
});

t.test('PINs expire; unused accounts are reclaimed; 409 when takeover is prevented', async (t) => {
  const log = path.join(dir, 'short-sms.log');
  const short = await startTestServer({
    modules: phoneModules(log, ['    pin_lifetime: 150ms', '    reclaim_after: 300ms', '    prevent_takeover: true'].join('\n')),
  });
  t.teardown(() => short.close());
  const sapi = new Api(short, log);
  const c = newClient();

  t.equal((await sapi.authenticate('+4915112345690', c)).status, 200);
  const pin = sapi.lastPin('+4915112345690');
  await new Promise((r) => setTimeout(r, 300));
  t.equal((await sapi.password('+4915112345690', pin, 'pw', c)).status, 404, 'expired');

  const number = '+4915112345691';
  t.equal((await sapi.register(number, 'first owner')).status, 201);
  const owner = await RawClient.login(short.c2sPort, number, 'first owner', { resource: 'r', presence: false });
  owner.send("<iq type='set' id='p1'><query xmlns='jabber:iq:private'><note xmlns='urn:test:note'>old owner's data</note></query></iq>");
  t.equal((await owner.nextNamed('iq', 'p1')).attrs.type, 'result');
  const busy = await sapi.authenticate(number, newClient());
  t.equal(busy.status, 409, 'logged in: prevent_takeover refuses');
  owner.end();
  await owner.closed();
  await new Promise((r) => setTimeout(r, 450));
  const res = await sapi.register(number, 'second owner');
  t.equal(res.status, 201, 'unused longer than reclaim_after: created fresh');
  const fresh = await RawClient.login(short.c2sPort, number, 'second owner', { resource: 'r', presence: false });
  fresh.send("<iq type='get' id='p2'><query xmlns='jabber:iq:private'><note xmlns='urn:test:note'/></query></iq>");
  const got = await fresh.nextNamed('iq', 'p2');
  t.equal(got.getChild('query')?.getChild('note')?.getText() ?? '', '', 'nothing of the old owner is left');
  fresh.end();
  t.ok(await loginFails(short.c2sPort, number, 'first owner'));
});

t.test('countries by calling code, SMS by language, and the Host header picks the host', async (t) => {
  const c = newClient();
  t.equal((await api.authenticate('+14155552671', c)).status, 200, 'allowed by calling code +1');
  t.equal((await api.authenticate('+4915112345692', c, { 'Accept-Language': 'de-DE,de;q=0.9,en;q=0.5' })).status, 200);
  t.match(readFileSync(mainLog, 'utf8'), /\+4915112345692 "Dein Code für localhost: \d{6}"/, 'the German text');

  const log = path.join(dir, 'two-hosts-sms.log');
  const two = await startTestServer({ hosts: ['localhost', 'other.test'], modules: phoneModules(log) });
  t.teardown(() => two.close());
  const tapi = new Api(two, log);
  const number = '+4915112345693';
  const viaHost = (method: string, p: string, headers: Record<string, string>, body?: string) => new Promise<number>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: two.httpPort, method, path: `/api${p}`, headers: { ...headers, Host: 'api.other.test' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(body);
  });
  const cl = newClient();
  const common = { 'User-Agent': UA, 'Installation-Id': cl.installation, 'X-Real-IP': cl.ip };
  t.equal(await viaHost('GET', `/authentication/${encodeURIComponent(number)}`, common), 200);
  const auth = Buffer.from(`\0${number}\0${tapi.lastPin(number)}`).toString('base64');
  t.equal(await viaHost('POST', '/password', { ...common, Authorization: auth }, 'pw'), 201);
  t.ok(await two.server.accounts.exists(number, 'other.test'), 'created on the host named by api.<host>');
  t.notOk(await two.server.accounts.exists(number, 'localhost'));
  t.equal((await tapi.register('+4915112345694', 'pw')).status, 201, 'another Host name: the first configured host');
  t.ok(await two.server.accounts.exists('+4915112345694', 'localhost'));
});
