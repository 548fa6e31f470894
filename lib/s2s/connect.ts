// Opens a connection to a remote server: each target in turn (see resolve.ts), TCP within
// connect_timeout, and for Direct TLS targets the TLS handshake too (SNI = the remote domain,
// ALPN xmpp-server, XEP-0368). Certificates are not judged here (rejectUnauthorized off): the
// stream decides between SASL EXTERNAL and dialback once it knows what the peer presented.
import net from 'node:net';
import tls from 'node:tls';
import type { CertStore } from '../net/certs.js';
import type { Target } from './resolve.js';

export interface Connection {
  socket: net.Socket;
  target: Target;
  /** Already a TLS socket (Direct TLS). */
  secure: boolean;
}

/** TLS client options for a server stream from `local` to `remote`: our certificate as client certificate. */
export function tlsClientOptions(certs: CertStore, local: string, remote: string): tls.ConnectionOptions {
  return {
    // The context holds the certificate serving `local`, so the peer sees the same one as when it connects to us.
    secureContext: certs.secureContext(local),
    servername: net.isIP(remote) ? undefined : remote,
    rejectUnauthorized: false,
    ALPNProtocols: ['xmpp-server'],
    minVersion: 'TLSv1.2',
  };
}

function connectTcp(target: Target, timeoutMs: number, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: target.host, port: target.port, noDelay: true });
    const fail = (err: Error) => {
      cleanup();
      socket.destroy();
      reject(err);
    };
    const timer = setTimeout(() => fail(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })), timeoutMs);
    const onAbort = () => fail(new Error('aborted'));
    const cleanup = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      socket.off('error', fail);
    };
    signal.addEventListener('abort', onAbort);
    socket.once('error', fail);
    socket.once('connect', () => {
      cleanup();
      // Errors after this are the stream's business; TLS may wrap this socket and take them over.
      socket.on('error', () => undefined);
      resolve(socket);
    });
  });
}

function handshake(socket: net.Socket, options: tls.ConnectionOptions, timeoutMs: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const secured = tls.connect({ ...options, socket });
    const timer = setTimeout(() => fail(new Error('TLS handshake timeout')), timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      secured.destroy();
      socket.destroy();
      reject(err);
    };
    secured.once('error', fail);
    secured.once('secureConnect', () => {
      clearTimeout(timer);
      secured.off('error', fail);
      resolve(secured);
    });
  });
}

/**
 * The first target that accepts, or undefined when none does (each failure is reported through
 * `onFailure`, for the log). Stops trying when the signal aborts (setup timeout).
 */
export async function connectFirst(
  targets: readonly Target[],
  o: { timeoutMs: number; tls: tls.ConnectionOptions; signal: AbortSignal; onFailure(target: Target, err: Error): void },
): Promise<Connection | undefined> {
  for (const target of targets) {
    if (o.signal.aborted) return undefined;
    try {
      const socket = await connectTcp(target, o.timeoutMs, o.signal);
      if (target.tls === 'starttls') return { socket, target, secure: false };
      return { socket: await handshake(socket, o.tls, o.timeoutMs), target, secure: true };
    } catch (err) {
      o.onFailure(target, err as Error);
    }
  }
  return undefined;
}
