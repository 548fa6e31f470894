// parleyctl as an administrator runs it: a separate process, with and without a running server.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer, testConfigText } from '../helpers/server.js';

const bin = fileURLToPath(new URL('../../bin/parleyctl.js', import.meta.url));

function ctl(config: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, '--config', config, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

t.test('without a running server', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'parleyctl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = path.join(dir, 'parley.yml');
  writeFileSync(config, testConfigText(dir));

  t.match(await ctl(config, 'register', 'alice', 'localhost', 's3cret'), { code: 0, stdout: 'user alice@localhost registered\n' });
  t.match(await ctl(config, 'register', 'bob', 'localhost', 'pw'), { code: 0 });
  t.match(await ctl(config, 'users', 'localhost'), { code: 0, stdout: 'alice\nbob\n' });
  const dup = await ctl(config, 'register', 'alice', 'localhost', 'x');
  t.equal(dup.code, 1);
  t.equal(dup.stderr, 'parleyctl: user alice@localhost already exists\n', 'one line');
  t.match(await ctl(config, 'passwd', 'alice', 'localhost', 'new'), { code: 0 });
  t.match(await ctl(config, 'passwd', 'zed', 'localhost', 'new'), { code: 1, stderr: /does not exist/ });
  t.match(await ctl(config, 'register', 'a@b', 'localhost', 'x'), { code: 1, stderr: /invalid username/ });
  t.match(await ctl(config, 'register', 'carol', 'elsewhere.example', 'x'), { code: 1, stderr: /not served here/ });
  t.match(await ctl(config, 'register', 'carol', 'localhost'), { code: 1, stderr: /expected 3 argument/ });
  t.match(await ctl(config, 'frobnicate'), { code: 2, stderr: /unknown command 'frobnicate'/ });
  t.match(await ctl(config, 'unregister', 'bob', 'localhost'), { code: 0 });
  t.match(await ctl(config, 'users', 'localhost'), { stdout: 'alice\n' });
  t.match(await ctl(config, 'status'), { code: 3, stdout: 'not running\n' });
  t.match(await ctl(path.join(dir, 'missing.yml'), 'users', 'localhost'), { code: 1, stderr: /^parleyctl: .*missing\.yml.*\n$/ });

  // The password set offline is the one the server accepts later.
  const srv = await startTestServer({ dataDir: dir });
  t.teardown(() => srv.close());
  const c = await RawClient.login(srv.c2sPort, 'alice', 'new');
  t.match(c.jid, /^alice@localhost\//);
  c.end();
});

t.test('with a running server, through the admin socket', async (t) => {
  const srv = await startTestServer();
  t.teardown(() => srv.close());
  t.match(await ctl(srv.configFile, 'status'), { code: 0, stdout: /running: 0 session/ });
  t.match(await ctl(srv.configFile, 'register', 'dave', 'localhost', 'pw1'), { code: 0 });
  const c = await RawClient.login(srv.c2sPort, 'dave', 'pw1');
  t.match(await ctl(srv.configFile, 'users', 'localhost'), { stdout: 'dave\n' });
  t.match(await ctl(srv.configFile, 'register', 'dave', 'localhost', 'x'), { code: 1, stderr: /already exists/ });
  t.match(await ctl(srv.configFile, 'unregister', 'dave', 'localhost'), { code: 0 });
  t.equal(await c.streamError(), 'not-authorized', 'the removed account is disconnected');
  await t.rejects(RawClient.login(srv.c2sPort, 'dave', 'pw1'));
});
