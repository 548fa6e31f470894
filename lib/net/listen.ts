// TCP listeners for XMPP streams, and the bind step every Parley listener shares.
import net from 'node:net';
import { BootError } from '../errors.js';
import type { Logger } from '../log.js';

export interface ListenTcpOptions {
  port: number;
  ip: string;
  log: Logger;
  /** Whole listener; 0 or less means no limit. */
  maxConnections: number;
  /** Open connections from one address; 0 or less means no limit. */
  maxConnectionsPerIp: number;
  onConnection: (socket: net.Socket) => void;
}

export interface TcpListener {
  port: number;
  close(): Promise<void>;
}

/** `ip:port` as people write it, with brackets around IPv6 addresses. */
export function formatAddress(ip: string, port: number): string {
  return net.isIPv6(ip) ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** One key per peer: an IPv4 client reaching a dual-stack socket shows up as ::ffff:a.b.c.d. */
export function peerAddress(socket: net.Socket): string | undefined {
  const addr = socket.remoteAddress;
  if (!addr) return undefined;
  return addr.startsWith('::ffff:') && net.isIPv4(addr.slice(7)) ? addr.slice(7) : addr;
}

function listenOnce(server: net.Server, port: number, ip: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    // ipv6Only stays false: '::' then also accepts IPv4 (as ::ffff:a.b.c.d).
    server.listen({ port, host: ip, ipv6Only: false });
  });
}

/**
 * Binds a server and returns the real port (useful with port 0). A machine without IPv6 cannot
 * bind '::'; the wildcard then falls back to IPv4's '0.0.0.0' instead of failing the boot.
 * Any other failure is a BootError('LISTEN_FAILED') naming the address.
 */
export async function bindServer(server: net.Server, port: number, ip: string, log: Logger): Promise<number> {
  try {
    await listenOnce(server, port, ip);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (ip === '::' && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL')) {
      log.warn('IPv6 is not available; listening on IPv4 only', { port });
      return bindServer(server, port, '0.0.0.0', log);
    }
    const reason = code === 'EADDRINUSE' ? 'address already in use'
      : code === 'EACCES' ? 'permission denied (ports below 1024 need privileges)'
      : code === 'EADDRNOTAVAIL' ? 'address not available on this machine'
      : code ?? (err as Error).message;
    throw new BootError('LISTEN_FAILED', `cannot listen on ${formatAddress(ip, port)}: ${reason}`, { cause: err });
  }
  const address = server.address();
  return typeof address === 'object' && address ? address.port : port;
}

/** Closes the server and destroys the connections it still holds; resolves once it is closed. */
export function closeServer(server: net.Server, sockets: Iterable<net.Socket>): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      for (const s of sockets) s.destroy();
      resolve();
      return;
    }
    // close() waits for open connections, so they are destroyed right after it stops accepting.
    server.close(() => resolve());
    for (const s of sockets) s.destroy();
  });
}

export async function listenTcp(o: ListenTcpOptions): Promise<TcpListener> {
  const perIp = new Map<string, number>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ noDelay: true });
  if (o.maxConnections > 0) server.maxConnections = o.maxConnections;

  server.on('connection', (socket) => {
    const ip = peerAddress(socket);
    if (!ip) {
      // The peer is already gone.
      socket.destroy();
      return;
    }
    const count = perIp.get(ip) ?? 0;
    if (o.maxConnectionsPerIp > 0 && count >= o.maxConnectionsPerIp) {
      o.log.debug('connection refused: too many from this address', { ip, limit: o.maxConnectionsPerIp });
      socket.destroy();
      return;
    }
    perIp.set(ip, count + 1);
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      const n = (perIp.get(ip) ?? 1) - 1;
      if (n > 0) perIp.set(ip, n);
      else perIp.delete(ip);
    });
    // The stream owner adds its own handler; this one keeps a reset that arrives before it does
    // from crashing the process.
    socket.on('error', (err) => o.log.debug('socket error', { ip, err: err.message }));
    try {
      o.onConnection(socket);
    } catch (err) {
      o.log.error('connection handler failed', { ip, err: err as Error });
      socket.destroy();
    }
  });

  const port = await bindServer(server, o.port, o.ip, o.log);
  // Errors after the bind (e.g. EMFILE on accept) are logged; bind errors were thrown above.
  server.on('error', (err) => o.log.error('listener error', { err }));
  o.log.info('listening', { address: formatAddress(o.ip, port) });
  return {
    port,
    close: () => closeServer(server, sockets),
  };
}
