// `parleyctl import` as an administrator runs it: a separate process, with and without a running
// server, on exports shaped like ejabberd's and Prosody's; the imported accounts then log in to a
// real server with their passwords.
import { execFile } from 'node:child_process';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { RosterStore } from '../../plugins/roster/store.js';
import type { Json } from '../../lib/storage/types.js';
import { RawClient } from '../helpers/raw-client.js';
import { tlsLogin } from '../helpers/scram-client.js';
import { startTestServer, testConfigText } from '../helpers/server.js';
import type { Test } from '../helpers/storage-contract.js';

const bin = fileURLToPath(new URL('../../bin/parleyctl.js', import.meta.url));
const fixtures = fileURLToPath(new URL('../fixtures/piefxis/', import.meta.url));

function ctl(config: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, '--config', config, ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** A data directory with the test config, as the test server will use it. */
function dataDir(t: Test): { dir: string; config: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'parley-import-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = path.join(dir, 'parley.yml');
  writeFileSync(config, testConfigText(dir));
  return { dir, config };
}

/** SCRAM credentials as an exporting server computes them (RFC 5802 §3), written independently of lib/. */
function exportedScram(password: string, algo: 'sha1' | 'sha256', iterations = 4096): { salt: string; storedKey: string; serverKey: string } {
  const salt = randomBytes(16);
  const salted = pbkdf2Sync(password, salt, iterations, algo === 'sha1' ? 20 : 32, algo);
  const clientKey = createHmac(algo, salted).update('Client Key').digest();
  return {
    salt: salt.toString('base64'),
    storedKey: createHash(algo).update(clientKey).digest('base64'),
    serverKey: createHmac(algo, salted).update('Server Key').digest('base64'),
  };
}

const escapeAttr = (s: string): string => s.replace(/&/g, '&amp;').replace(/'/g, '&apos;').replace(/</g, '&lt;');

const USERS = 2000;
/** Every 200th user (7, 207, ...) comes with SCRAM-SHA-1 credentials instead of a password. */
const isScramUser = (i: number): boolean => i % 200 === 7;
/** Passwords with an escaped character and non-ASCII, so entity decoding and UTF-8 matter. */
const passwordOf = (i: number): string => `p&w-${i}-ünï`;

t.test(`${USERS} users from one file, imported without a server, then logged in`, async (t) => {
  const { dir, config } = dataDir(t);
  const lines = ["<?xml version='1.0' encoding='UTF-8'?>", "<server-data xmlns='urn:xmpp:pie:0'>", "  <host jid='localhost'>"];
  for (let i = 0; i < USERS; i++) {
    const roster = `<query xmlns='jabber:iq:roster'><item jid='user${(i + 1) % USERS}@localhost' name='Next' subscription='both'><group>Ring</group></item></query>`;
    if (isScramUser(i)) {
      const c = exportedScram(passwordOf(i), 'sha1');
      lines.push(`    <user name='user${i}'><scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>`
        + `<iter-count>4096</iter-count><salt>${c.salt}</salt><server-key>${c.serverKey}</server-key><stored-key>${c.storedKey}</stored-key>`
        + `</scram-credentials>${roster}</user>`);
    } else {
      lines.push(`    <user name='user${i}' password='${escapeAttr(passwordOf(i))}'>${roster}</user>`);
    }
  }
  lines.push('  </host>', '</server-data>', '');
  const file = path.join(dir, 'export.xml');
  writeFileSync(file, lines.join('\n'));

  const run = await ctl(config, 'import', file);
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, new RegExp(`^imported ${USERS} users \\(${USERS} new, 0 updated\\) on 1 host in \\d+\\.\\d s\\n`), 'the summary line');
  t.match(run.stdout, new RegExp(`^rosters: ${USERS} users, ${USERS} contacts, 0 pending subscription requests$`, 'm'));
  t.equal(run.stderr, '', 'no progress bar off a terminal');
  const listed = await ctl(config, 'users', 'localhost');
  t.equal(listed.stdout.trim().split('\n').length, USERS, 'every user is there');

  const srv = await startTestServer({ dataDir: dir });
  t.teardown(() => srv.close());
  for (const i of [0, 523, 1999]) {
    const c = await RawClient.login(srv.c2sPort, `user${i}`, passwordOf(i), { presence: false });
    t.match(c.jid, new RegExp(`^user${i}@localhost/`), `user${i} logs in with PLAIN`);
    c.end();
  }
  t.match(await tlsLogin({ port: srv.c2sPort, mechanism: 'SCRAM-SHA-256', user: 'user42', password: passwordOf(42) }),
    { ok: true, verified: true }, 'a password import has SCRAM-SHA-256 credentials too');
  t.match(await tlsLogin({ port: srv.c2sPort, mechanism: 'SCRAM-SHA-1', user: 'user1207', password: passwordOf(1207) }),
    { ok: true, verified: true }, 'imported SCRAM-SHA-1 credentials work as they are');
  const plain = await RawClient.login(srv.c2sPort, 'user207', passwordOf(207), { presence: false });
  t.match(plain.jid, /^user207@localhost\//, 'and PLAIN against imported SCRAM credentials');
  plain.end();
  t.match(await tlsLogin({ port: srv.c2sPort, mechanism: 'PLAIN', user: 'user8', password: 'wrong' }), { ok: false, condition: 'not-authorized' });

  const roster = new RosterStore(srv.server.storage.map<Json>('roster'), srv.server.storage.keyval<Json>('roster_version'));
  t.same((await roster.get('user5@localhost', 'user6@localhost')).item,
    { jid: 'user6@localhost', name: 'Next', groups: ['Ring'], subscription: 'both' }, 'the roster was imported');
});

t.test('ejabberd export (main file, host file, scram: passwords) without a server', async (t) => {
  const { dir, config } = dataDir(t);
  const run = await ctl(config, 'import', path.join(fixtures, 'ejabberd'));
  t.equal(run.code, 0, run.stderr);
  t.equal(run.stdout.split('\n')[0]!.replace(/in \d+\.\d s$/, 'in T s'), 'imported 2 users (2 new, 0 updated) on 1 host in T s');
  t.match(run.stdout, /^rosters: 2 users, 3 contacts, 1 pending subscription request$/m);
  t.match(run.stdout, /^warning: not imported: .*vCards.*: 1.*offline messages: 1.*private XML stores: 1$/m, 'what was left out is named');

  // Running again changes credentials: the export is the newer truth.
  const newer = path.join(dir, 'newer.xml');
  writeFileSync(newer, "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='Ann' password='ann-new'/></host></server-data>");
  t.match(await ctl(config, 'import', newer), { code: 0, stdout: /^imported 1 user \(0 new, 1 updated\) on 1 host in/ });

  const srv = await startTestServer({ dataDir: dir });
  t.teardown(() => srv.close());
  t.match(await tlsLogin({ port: srv.c2sPort, mechanism: 'PLAIN', user: 'ann', password: 'ann-pass' }), { ok: false }, 'the old password no longer works');
  t.match(await tlsLogin({ port: srv.c2sPort, mechanism: 'SCRAM-SHA-256', user: 'ann', password: 'ann-new' }), { ok: true, verified: true });
  t.match(await tlsLogin({ port: srv.c2sPort, mechanism: 'SCRAM-SHA-1', user: 'bob', password: 'bob-pass' }), { ok: true, verified: true },
    "ejabberd's scram: password form");

  const roster = new RosterStore(srv.server.storage.map<Json>('roster'), srv.server.storage.keyval<Json>('roster_version'));
  t.same((await roster.get('ann@localhost', 'bob@localhost')).item,
    { jid: 'bob@localhost', name: 'Bob', groups: ['Friends', 'Work'], subscription: 'both' });
  t.same((await roster.get('ann@localhost', 'carol@example.org')).item,
    { jid: 'carol@example.org', groups: [], subscription: 'none', ask: 'subscribe' }, 'pending out');
  const request = await roster.get('ann@localhost', 'dave@example.org');
  t.equal(request.item, undefined, 'a pending inbound request is no roster item');
  t.match(request.pendingIn, /^<presence [^>]*from="dave@example.org"[^>]*>.*It is Dave/, 'but is kept for redelivery');
});

t.test('Prosody export (one file per user) through a running server', async (t) => {
  const srv = await startTestServer();
  t.teardown(() => srv.close());
  const run = await ctl(srv.configFile, 'import', path.relative(process.cwd(), path.join(fixtures, 'prosody')));
  t.equal(run.code, 0, run.stderr);
  t.match(run.stdout, /^imported 2 users \(2 new, 0 updated\) on 1 host in \d+\.\d s\nrosters: 2 users, 2 contacts/);
  for (const mechanism of ['SCRAM-SHA-1', 'SCRAM-SHA-256', 'PLAIN']) {
    t.match(await tlsLogin({ port: srv.c2sPort, mechanism, user: 'carol', password: 'carol-pass' }), { ok: true }, `carol with ${mechanism}`);
  }
  t.match(await tlsLogin({ port: srv.c2sPort, mechanism: 'SCRAM-SHA-256', user: 'dave', password: 'dave-pass' }), { ok: true, verified: true });
  t.match(await ctl(srv.configFile, 'users', 'localhost'), { stdout: 'carol\ndave\n' });
});

t.test('a bad export is refused whole, naming the file and the element', async (t) => {
  const { dir, config } = dataDir(t);
  const good = "<user name='early' password='pw'/>";
  const cases: Array<[string, string, RegExp]> = [
    ['malformed.xml',
      `<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='localhost'>\n${good}\n<user name='x' password='y'>\n</host>\n</server-data>\n`,
      /:5:7: unexpected close tag/],
    ['unknown-host.xml',
      `<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='localhost'>${good}</host>\n<host jid='elsewhere.example'>\n<user name='z' password='pw'/></host></server-data>`,
      /:3:1: host 'elsewhere\.example' is not served here \(hosts: localhost\)/],
    ['no-name.xml',
      `<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='localhost'>\n${good}\n  <user password='pw'/>\n</host></server-data>`,
      /:4:3: <user> has no 'name' attribute/],
    ['doctype.xml',
      `<?xml version='1.0'?>\n<!DOCTYPE server-data [<!ENTITY big 'lots'>]>\n<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='e' password='&big;'/></host></server-data>`,
      /:2:\d+: DOCTYPE is not allowed/],
    ['bad-name.xml',
      `<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>${good}<user name='a b' password='pw'/></host></server-data>`,
      /:1:\d+: <user name='a b'>: not a valid username/],
    ['bad-scram.xml',
      `<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='s'>\n<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'><iter-count>4096</iter-count><salt>c2FsdA==</salt><server-key>c2hvcnQ=</server-key><stored-key>c2hvcnQ=</stored-key></scram-credentials></user></host></server-data>`,
      /:2:1: the SCRAM stored-key is not 20 bytes of base64/],
    ['escape.xml',
      `<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='../../etc/passwd'/></server-data>`,
      /:1:\d+: <include href='\.\.\/\.\.\/etc\/passwd'> leaves the directory of the import/],
    ['not-pie.xml', '<stream:stream xmlns:stream="http://etherx.jabber.org/streams"/>', /:1:\d+: expected <server-data xmlns='urn:xmpp:pie:0'>/],
  ];
  for (const [name, xml, message] of cases) {
    const file = path.join(dir, name);
    writeFileSync(file, xml);
    const run = await ctl(config, 'import', file);
    t.equal(run.code, 1, `${name}: fails`);
    t.match(run.stderr, new RegExp(`^parleyctl: ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}${message.source}[^\\n]*\\n$`), `${name}: one line naming the file and position`);
    t.equal(run.stdout, '', `${name}: no summary`);
  }
  t.match(await ctl(config, 'users', 'localhost'), { code: 0, stdout: '' }, 'users before the problem were not imported either');
  t.match(await ctl(config, 'import', path.join(dir, 'missing.xml')), { code: 1, stderr: /^parleyctl: .*missing\.xml: no such file or directory\n$/ });
  t.match(await ctl(config, 'import'), { code: 1, stderr: /expected 1 argument\(s\): PATH/ });
});
