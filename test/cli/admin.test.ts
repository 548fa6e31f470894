// Live administration through parleyctl: reload without dropping sessions, kick, stats, stop.
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { createLogger, type LogFields } from '../../lib/log.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const bin = fileURLToPath(new URL('../../bin/parleyctl.js', import.meta.url));

function ctl(config: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, '--config', config, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function versionName(c: RawClient, id: string): Promise<string | null> {
  c.send(`<iq to='localhost' type='get' id='${id}'><query xmlns='jabber:iq:version'/></iq>`);
  return (await c.nextNamed('iq', id)).getChild('query')?.getChildText('name') ?? null;
}

async function features(c: RawClient, id: string): Promise<string[]> {
  c.send(`<iq to='localhost' type='get' id='${id}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`);
  return (await c.nextNamed('iq', id)).getChild('query')!.getChildren('feature').map((f) => String(f.attrs.var));
}

const lines: LogFields[] = [];
const log = createLogger({ level: 'info', format: 'json', write: (l) => lines.push(JSON.parse(l) as LogFields) });
const srv = await startTestServer({ log });
t.teardown(() => srv.close());
await srv.register('alice', 'pw');
await srv.register('bob', 'pw');
const original = readFileSync(srv.configFile, 'utf8');

t.test('reload applies module changes and keeps sessions', async (t) => {
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'r' });
  t.equal(await versionName(alice, 'v1'), 'Parley');
  t.notOk((await features(alice, 'f1')).includes('jabber:iq:last'));
  writeFileSync(srv.configFile, original.replace('  version: {}', '  version:\n    name: Renamed\n  uptime: {}'));
  const r = await ctl(srv.configFile, 'reload');
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /configuration reloaded: localhost: reloaded uptime, version/);
  t.equal(await versionName(alice, 'v2'), 'Renamed', 'changed option applied');
  t.ok((await features(alice, 'f2')).includes('jabber:iq:last'), 'added module loaded');
  t.notOk(alice.isClosed, 'the session survived');
  alice.send("<iq to='localhost' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>");
  t.equal((await alice.nextNamed('iq', 'p')).attrs.type, 'result');

  writeFileSync(srv.configFile, original.replace('  version: {}', '  version:\n    name: [not, a, string]'));
  const bad = await ctl(srv.configFile, 'reload');
  t.equal(bad.code, 1);
  t.match(bad.stderr, /^parleyctl: reload refused: .*modules\.version\.name/);
  t.ok(lines.some((l) => l.msg === 'reload refused, keeping the running configuration'), 'logged');
  t.equal(await versionName(alice, 'v3'), 'Renamed', 'old configuration still running');

  writeFileSync(srv.configFile, original.replace('  ping: {}', '  ping: {}\n  no_such_module: {}'));
  t.match(await ctl(srv.configFile, 'reload'), { code: 1, stderr: /unknown module 'no_such_module'/ });
  writeFileSync(srv.configFile, original);
  t.match(await ctl(srv.configFile, 'reload'), { code: 0, stdout: /reloaded uptime, version/ });
  t.equal(await versionName(alice, 'v4'), 'Parley');
  alice.end();
});

t.test('stats, kick', async (t) => {
  const a1 = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'one' });
  const a2 = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'two' });
  const b = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'b' });
  const stats = await ctl(srv.configFile, 'stats');
  t.equal(stats.code, 0);
  t.match(stats.stdout, /^sessions: 3\nstanzas in: \d+\nstanzas out: \d+\n/);
  t.match(stats.stdout, /alice@localhost\/one\tin=\d+\tout=\d+\tqueue=0\tunacked=\d+\tsendbuf=\d+/);
  t.match(await ctl(srv.configFile, 'kick', 'alice@localhost/one'), { code: 0, stdout: '1 session(s) of alice@localhost/one disconnected\n' });
  t.equal(await a1.streamError(), 'policy-violation');
  t.notOk(a2.isClosed);
  t.match(await ctl(srv.configFile, 'kick', 'alice@localhost'), { code: 0, stdout: /^1 session/ });
  await a2.closed();
  t.match(await ctl(srv.configFile, 'kick', 'alice@localhost'), { code: 1, stderr: /is not connected/ });
  t.match(await ctl(srv.configFile, 'kick', 'a@b@c'), { code: 1, stderr: /invalid JID/ });
  b.end();
});

t.test('stop', async (t) => {
  const b = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'b2' });
  t.match(await ctl(srv.configFile, 'stop'), { code: 0, stdout: 'stopping\n' });
  t.equal(await b.streamError(), 'system-shutdown');
  await t.rejects(RawClient.connect(srv.c2sPort), 'the listener is closed');
  t.match(await ctl(srv.configFile, 'status'), { code: 3, stdout: 'not running\n' });
  t.match(await ctl(srv.configFile, 'stats'), { code: 1, stderr: /not running/ });
});
