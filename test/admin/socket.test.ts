// The local admin socket parleyctl uses to reach a running server.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { AdminCommandError, callAdmin, startAdminSocket, type AdminCommand } from '../../lib/admin/socket.js';
import { BootError } from '../../lib/errors.js';
import { silentLogger } from '../../lib/log.js';

function tempDir(t: Test): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'parley-admin-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const commands = new Map<string, AdminCommand>([
  ['echo', async (args) => args.join(' ')],
  ['usage', async () => {
    throw new AdminCommandError('expected 2 argument(s):\nUSER HOST');
  }],
  ['crash', async () => {
    throw new Error('disk on fire');
  }],
  ['slow', async () => new Promise((r) => setTimeout(() => r('done'), 300))],
]);

/** Sends raw bytes and returns the raw answer. */
function raw(socketPath: string, data: string | Buffer, endWrite = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path: socketPath });
    let out = '';
    s.on('data', (c: Buffer) => (out += c.toString()));
    s.on('end', () => resolve(out));
    s.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? resolve(out) : reject(err)));
    s.write(data);
    if (endWrite) s.end();
  });
}

t.test('round trip, errors, limits, close', async (t) => {
  const dir = tempDir(t);
  const socketPath = path.join(dir, 'parleyctl.sock');
  const errors: string[] = [];
  const log = { ...silentLogger, error: (msg: string) => void errors.push(msg), child: () => log };
  const admin = await startAdminSocket({ path: socketPath, commands, log });
  let closed = false;
  t.teardown(() => (closed ? undefined : admin.close()));

  t.ok(statSync(socketPath).isSocket());
  t.equal(statSync(socketPath).mode & 0o777, 0o600, 'only the owner may connect');

  t.same(await callAdmin(socketPath, 'echo', ['a', 'b c']), { ok: true, output: 'a b c' });
  t.same(await callAdmin(socketPath, 'echo', []), { ok: true, output: '' });
  t.match(await callAdmin(socketPath, 'frobnicate', []), { ok: false, error: /unknown command 'frobnicate'/ });
  t.same(await callAdmin(socketPath, 'usage', []), { ok: false, error: 'expected 2 argument(s): USER HOST' }, 'user errors propagate as one line');
  t.match(await callAdmin(socketPath, 'crash', []), { ok: false, error: /disk on fire/ }, 'unexpected errors are reported');
  t.same(errors, ['admin command failed'], '…and logged; user errors are not');
  t.match(await callAdmin(socketPath, 'slow', [], 50), { ok: false, error: /no answer/ }, 'client timeout');
  const [x, y] = await Promise.all([callAdmin(socketPath, 'slow', []), callAdmin(socketPath, 'echo', ['fast'])]);
  t.same([x, y], [{ ok: true, output: 'done' }, { ok: true, output: 'fast' }], 'concurrent clients');

  t.match(JSON.parse(await raw(socketPath, 'not json\n')), { ok: false, error: /not JSON/ });
  t.match(JSON.parse(await raw(socketPath, '{"command": 1}\n')), { ok: false, error: /invalid request/ });
  t.match(JSON.parse(await raw(socketPath, '{"command": "echo", "args": ["no newline"]}', true)), { ok: true, output: 'no newline' }, 'end of input ends a request');
  const huge = JSON.stringify({ command: 'echo', args: ['z'.repeat(70 * 1024)] }) + '\n';
  t.match(JSON.parse(await raw(socketPath, huge)), { ok: false, error: /too large/ }, '64 KiB request limit');
  const fits = JSON.stringify({ command: 'echo', args: ['z'.repeat(60 * 1024)] });
  t.match(await callAdmin(socketPath, 'echo', ['z'.repeat(60 * 1024)]), { ok: true }, `${fits.length} bytes fit`);

  closed = true;
  await admin.close();
  t.notOk(existsSync(socketPath), 'socket file removed on close');
  t.equal(await callAdmin(socketPath, 'echo', []), 'not-running');
});

t.test('a second server on the same socket is refused; the first keeps working', async (t) => {
  const dir = tempDir(t);
  const socketPath = path.join(dir, 'parleyctl.sock');
  const first = await startAdminSocket({ path: socketPath, commands, log: silentLogger });
  t.teardown(() => first.close());
  const err = await startAdminSocket({ path: socketPath, commands, log: silentLogger }).then(() => undefined, (e: unknown) => e);
  t.type(err, BootError);
  t.match(err, { code: 'LISTEN_FAILED', message: 'another server is running with this data directory' });
  t.same(await callAdmin(socketPath, 'echo', ['still']), { ok: true, output: 'still' });
});

t.test('a stale socket left by a killed server is replaced', async (t) => {
  const dir = tempDir(t);
  const socketPath = path.join(dir, 'parleyctl.sock');
  // A process killed outright never removes its socket file.
  const script = `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`;
  spawnSync(process.execPath, ['-e', script], { timeout: 10_000 });
  t.ok(existsSync(socketPath), 'stale file present');
  t.equal(await callAdmin(socketPath, 'echo', []), 'not-running', 'nobody answers on it');

  const admin = await startAdminSocket({ path: socketPath, commands, log: silentLogger });
  t.teardown(() => admin.close());
  t.same(await callAdmin(socketPath, 'echo', ['fresh']), { ok: true, output: 'fresh' });
});

t.test('refuses to replace a file that is not a socket, or a path too long', async (t) => {
  const dir = tempDir(t);
  const socketPath = path.join(dir, 'parleyctl.sock');
  writeFileSync(socketPath, 'precious');
  t.equal(await callAdmin(socketPath, 'echo', []), 'not-running');
  await t.rejects(startAdminSocket({ path: socketPath, commands, log: silentLogger }), { code: 'LISTEN_FAILED', message: /not a socket/ });
  t.ok(existsSync(socketPath), 'left alone');

  const long = path.join(dir, 'd'.repeat(120), 'parleyctl.sock');
  await t.rejects(startAdminSocket({ path: long, commands, log: silentLogger }), { code: 'LISTEN_FAILED', message: /too long/ });
});

t.test('not-running when the socket is absent', async (t) => {
  const dir = tempDir(t);
  t.equal(await callAdmin(path.join(dir, 'nothing.sock'), 'status', []), 'not-running');
});
