// The local admin socket: parleyctl talks to the running server through a Unix domain socket in
// the data directory, so commands act on the live server (its caches, its sessions) instead of
// racing it on the storage. Access control is the file system: the socket is mode 0600.
//
// Protocol: one JSON line each way per connection.
//   request  {"command": "register", "args": ["alice", "example.com", "pw"]}
//   response {"ok": true, "output": "..."} | {"ok": false, "error": "one line"}
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { BootError } from '../errors.js';
import type { Logger } from '../log.js';

/** Output text for the administrator; throw AdminCommandError(message) for a user error. */
export type AdminCommand = (args: string[]) => Promise<string>;

/** A mistake of the administrator (bad arguments, unknown user): reported as is, not logged as a failure. */
export class AdminCommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AdminCommandError';
  }
}

export type AdminResponse = { ok: boolean; output?: string; error?: string };

export interface AdminSocketOptions {
  path: string;
  commands: Map<string, AdminCommand>;
  log: Logger;
}

/** Largest request line; commands take a few short arguments. */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** A client that connects and sends nothing is dropped after this long. */
const REQUEST_TIMEOUT_MS = 10_000;
/** Linux's sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

function oneLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

/** Is a server answering on this socket path? */
function probe(socketPath: string): Promise<'listening' | 'refused' | 'absent'> {
  return new Promise((resolve) => {
    const socket = net.connect({ path: socketPath });
    const done = (result: 'listening' | 'refused' | 'absent') => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    // A server too busy to accept within this time is still a server: never remove its socket.
    const timer = setTimeout(() => done('listening'), 2000);
    socket.once('connect', () => done('listening'));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') done('absent');
      else if (err.code === 'ECONNREFUSED' || err.code === 'ENOTSOCK') done('refused');
      else done('listening');
    });
  });
}

/** Removes a socket file left by a server that did not stop cleanly; refuses when one still answers. */
async function clearStaleSocket(socketPath: string, log: Logger): Promise<void> {
  let stat;
  try {
    stat = await lstat(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new BootError('LISTEN_FAILED', `admin socket ${socketPath}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  if (!stat.isSocket()) {
    throw new BootError('LISTEN_FAILED', `admin socket ${socketPath} exists and is not a socket; remove it`);
  }
  const state = await probe(socketPath);
  if (state === 'listening') {
    throw new BootError('LISTEN_FAILED', 'another server is running with this data directory');
  }
  if (state === 'refused') {
    log.info('removing stale admin socket', { path: socketPath });
    await unlink(socketPath).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw new BootError('LISTEN_FAILED', `cannot remove stale admin socket ${socketPath}: ${err.code}`, { cause: err });
    });
  }
}

function respond(socket: net.Socket, response: AdminResponse): void {
  if (!socket.writable) return;
  socket.end(JSON.stringify(response) + '\n');
}

async function runRequest(line: string, commands: Map<string, AdminCommand>, log: Logger): Promise<AdminResponse> {
  let request: unknown;
  try {
    request = JSON.parse(line);
  } catch {
    return { ok: false, error: 'invalid request: not JSON' };
  }
  const { command, args = [] } = (request ?? {}) as { command?: unknown; args?: unknown };
  if (typeof command !== 'string' || !Array.isArray(args) || !args.every((a) => typeof a === 'string')) {
    return { ok: false, error: 'invalid request: expected {"command": string, "args": [string]}' };
  }
  const run = commands.get(command);
  if (!run) return { ok: false, error: `unknown command '${oneLine(command)}' (see parleyctl help)` };
  try {
    const output = await run(args as string[]);
    return { ok: true, output: typeof output === 'string' ? output : String(output ?? '') };
  } catch (err) {
    if (err instanceof AdminCommandError) return { ok: false, error: oneLine(err.message) };
    log.error('admin command failed', { command, err: err as Error });
    return { ok: false, error: oneLine(`${command} failed: ${(err as Error)?.message ?? String(err)}`) };
  }
}

function serveConnection(socket: net.Socket, commands: Map<string, AdminCommand>, log: Logger): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let handled = false;
  socket.setTimeout(REQUEST_TIMEOUT_MS, () => {
    if (!handled) socket.destroy();
  });
  socket.on('error', (err) => log.debug('admin connection error', { err: err.message }));
  const onData = (chunk: Buffer) => {
    const newline = chunk.indexOf(0x0a);
    const take = newline < 0 ? chunk : chunk.subarray(0, newline);
    size += take.length;
    if (size > MAX_REQUEST_BYTES) {
      finish({ ok: false, error: `request too large (limit ${MAX_REQUEST_BYTES} bytes)` });
      return;
    }
    chunks.push(take);
    if (newline >= 0) dispatch();
  };
  const finish = (response: AdminResponse) => {
    handled = true;
    socket.off('data', onData);
    socket.off('end', dispatch);
    socket.setTimeout(0);
    respond(socket, response);
  };
  // A request may also be ended by closing the write side instead of a newline.
  const dispatch = () => {
    if (handled) return;
    handled = true;
    socket.off('data', onData);
    socket.off('end', dispatch);
    // Commands such as import may run long; the client decides how long it waits.
    socket.setTimeout(0);
    const line = Buffer.concat(chunks, size).toString('utf8');
    runRequest(line, commands, log).then((response) => respond(socket, response));
  };
  socket.on('data', onData);
  socket.on('end', dispatch);
}

export async function startAdminSocket(o: AdminSocketOptions): Promise<{ close(): Promise<void> }> {
  const socketPath = path.resolve(o.path);
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    throw new BootError('LISTEN_FAILED', `admin socket path is too long for a Unix socket (${Buffer.byteLength(socketPath)} bytes, at most ${MAX_SOCKET_PATH_BYTES}): ${socketPath}; set admin.socket to a shorter path`);
  }
  await mkdir(path.dirname(socketPath), { recursive: true, mode: 0o700 });
  await clearStaleSocket(socketPath, o.log);

  const connections = new Set<net.Socket>();
  // Half-open: a client may end its request by closing its write side and still read the answer.
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
    serveConnection(socket, o.commands, o.log);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(new BootError('LISTEN_FAILED', err.code === 'EADDRINUSE'
        ? 'another server is running with this data directory'
        : `cannot create admin socket ${socketPath}: ${err.code ?? err.message}`, { cause: err }));
    });
    // The bind happens inside listen(); a restrictive umask makes the socket 0600 from its first
    // moment rather than after a chmod. Worker threads cannot change the umask; the chmod below covers them.
    let previous: number | undefined;
    try {
      previous = process.umask(0o177);
    } catch {
      previous = undefined;
    }
    try {
      server.listen(socketPath, () => resolve());
    } finally {
      if (previous !== undefined) process.umask(previous);
    }
  });
  server.on('error', (err) => o.log.error('admin socket error', { err }));
  await chmod(socketPath, 0o600);
  o.log.info('admin socket listening', { path: socketPath });

  let closed: Promise<void> | undefined;
  return {
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const c of connections) c.destroy();
      }).then(() => unlink(socketPath).catch(() => {}));
      return closed;
    },
  };
}

/**
 * Runs a command in the running server. 'not-running' when no server listens on the socket
 * (file absent, or a stale file nobody answers on): the caller may then act on the storage itself.
 */
export function callAdmin(socketPath: string, command: string, args: string[], timeoutMs = 60_000): Promise<AdminResponse | 'not-running'> {
  return new Promise((resolve) => {
    const socket = net.connect({ path: socketPath });
    const chunks: Buffer[] = [];
    let connected = false;
    let settled = false;
    const done = (result: AdminResponse | 'not-running') => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done({ ok: false, error: `no answer from the server within ${Math.round(timeoutMs / 1000)} s` }), timeoutMs);
    socket.once('connect', () => {
      connected = true;
      socket.write(JSON.stringify({ command, args }) + '\n');
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) done('not-running');
      else if (err.code === 'EACCES') done({ ok: false, error: `no permission to use the admin socket ${socketPath}` });
      else done({ ok: false, error: `admin socket: ${err.code ?? err.message}` });
    });
    socket.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8').trim();
      try {
        const response = JSON.parse(text) as AdminResponse;
        if (typeof response !== 'object' || response === null || typeof response.ok !== 'boolean') throw new Error('shape');
        done(response);
      } catch {
        done({ ok: false, error: 'the server sent an invalid answer' });
      }
    });
  });
}
