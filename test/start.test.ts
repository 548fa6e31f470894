// `parley` as a process: starts with a config, refuses a broken one with one line and exit 1.
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { testConfigText } from './helpers/server.js';

const bin = fileURLToPath(new URL('../bin/parley.js', import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'parley-start-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('starts, logs JSON lines, stops on SIGTERM', async (t) => {
  const config = path.join(dir, 'ok.yml');
  writeFileSync(config, testConfigText(path.join(dir, 'data')) + '\nlog:\n  format: json\n');
  const child = spawn(process.execPath, [bin, '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  const started = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 20_000);
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('server started')) {
        clearTimeout(timer);
        resolve(true);
      }
    });
  });
  t.ok(started, err);
  const lines = err.trim().split('\n').map((l) => JSON.parse(l) as { level: string; msg: string });
  t.ok(lines.some((l) => l.msg === 'server started' && l.level === 'info'));
  t.ok(lines.some((l) => /self-signed/.test(l.msg)), 'warns about the generated certificate');
  child.kill('SIGTERM');
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.equal(code, 0);
});

t.test('a broken config stops the boot with file:line and exit 1', async (t) => {
  const config = path.join(dir, 'bad.yml');
  writeFileSync(config, 'hosts: [localhost]\nlisten:\n  - port: 99999\n    module: c2s\n');
  const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, [bin, '--config', config], { timeout: 20_000 }, (e, _o, stderr) =>
      resolve({ code: (e as { code?: number } | null)?.code ?? 0, stderr }));
  });
  t.equal(r.code, 1);
  t.match(r.stderr, /^parley: .*bad\.yml:3:\d+: listen\.0\.port/);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
});
