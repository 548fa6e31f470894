// RFC 7395: XMPP over WebSocket. One WebSocket message carries one `<open/>`, `<close/>` or one
// top-level element; the FramedTransport turns that into a regular stream for C2SSession, so
// SASL, binding, stream management and routing are the same code as for TCP clients.
//
// The endpoint exists once per HTTP listener while the plugin is loaded per host: the first
// loaded instance mounts it with its listener options (path, keepalive, origins, secure), every
// instance registers its host, and a stream may only be opened to a registered host.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { s } from '../../lib/config/schema.js';
import { definePlugin } from '../../lib/plugin/types.js';
import {
  FramedTransport, HostRegistry, NS_FRAMING, connectionSecure, originAllowed, perServer, type FrameSink, type OutgoingFrame,
} from '../../lib/session/framed-transport.js';
import type { Logger } from '../../lib/log.js';
import type { ServerApi } from '../../lib/server-api.js';

/** RFC 7395 §3.1: the WebSocket subprotocol of XMPP. */
const SUBPROTOCOL = 'xmpp';

const servers = new WeakMap<object, HostRegistry<true>>();

interface Options {
  path: string;
  ping_interval: number;
  secure: 'tls' | 'loopback' | 'always';
  origins: string[];
}

/** Answers an upgrade request that is refused, on the raw socket (no WebSocket yet). */
function refuse(socket: Duplex, status: number, reason: string, text: string): void {
  const body = Buffer.from(`${text}\n`, 'utf8');
  if (socket.writable) {
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n`
      + `Content-Length: ${body.length}\r\n\r\n${body.toString('utf8')}`);
  }
  const timer = setTimeout(() => socket.destroy(), 1000);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

function offeredProtocols(req: IncomingMessage): string[] {
  const header = req.headers['sec-websocket-protocol'];
  if (!header) return [];
  return (Array.isArray(header) ? header.join(',') : header).split(',').map((p) => p.trim()).filter(Boolean);
}

function encode(frame: OutgoingFrame): string {
  if (frame.type === 'element') return frame.xml;
  if (frame.type === 'close') return `<close xmlns='${NS_FRAMING}'/>`;
  // RFC 7395 §3.3.2: the server's <open/> answers with from, id, version and xml:lang.
  let out = `<open xmlns='${NS_FRAMING}'`;
  for (const name of ['from', 'to', 'id', 'version', 'xml:lang']) {
    const v = frame.attrs[name];
    if (v !== undefined) out += ` ${name}='${v}'`;
  }
  return out + '/>';
}

function serve(ws: WebSocket, req: IncomingMessage, server: ServerApi, registry: HostRegistry<true>, options: Options, log: Logger): void {
  // ws emits 'error' for protocol violations and oversize messages; unhandled it would throw.
  ws.on('error', (err) => log.debug('websocket error', { err: err.message }));
  let closing = false;
  const sink: FrameSink = {
    frame(frame) {
      if (ws.readyState !== ws.OPEN) return;
      ws.send(encode(frame));
      if (frame.type === 'close') closing = true;
    },
    end() {
      // RFC 7395 §3.6: after <close/> the server closes the WebSocket connection normally.
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(1000);
    },
    destroy() {
      if (ws.readyState === ws.CLOSED) return;
      // A close handshake the peer never answers must not keep the connection.
      if (closing || ws.readyState === ws.CLOSING) {
        setTimeout(() => ws.terminate(), 2000).unref();
      } else ws.close(1000);
    },
    buffered: () => ws.bufferedAmount,
    pause: () => ws.pause(),
    resume: () => ws.resume(),
  };
  const transport = new FramedTransport({
    remoteAddress: req.socket.remoteAddress,
    sink,
    allowHost: (domain) => registry.has(domain),
  });
  // Errors on the adapter are the session's concern (it listens too); this keeps one from throwing.
  transport.on('error', (err) => log.debug('websocket transport error', { err: err.message }));
  server.createClientSession(transport, { secure: true });

  ws.on('message', (data: RawData, isBinary: boolean) => {
    if (isBinary) {
      // RFC 7395 §3.2: XMPP is carried in text frames only.
      ws.close(1003, 'XMPP uses text frames');
      transport.destroy();
      return;
    }
    transport.receiveFrame(Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(data as Buffer[]).toString('utf8'));
  });

  let alive = true;
  ws.on('pong', () => {
    alive = true;
  });
  let pinger: NodeJS.Timeout | undefined;
  if (options.ping_interval > 0) {
    // A WebSocket ping each interval; a connection that has not answered the previous one is dead.
    pinger = setInterval(() => {
      if (!alive) {
        log.debug('websocket keepalive timed out');
        ws.terminate();
        return;
      }
      alive = false;
      ws.ping();
    }, options.ping_interval);
    pinger.unref();
  }
  ws.on('close', (code: number) => {
    clearInterval(pinger);
    log.debug('websocket closed', { code });
    transport.destroy();
  });
}

export default definePlugin({
  name: 'websocket',
  options: s.object({
    path: s.string({
      default: '/xmpp-websocket',
      check: (v) => (v.startsWith('/') ? undefined : "must start with '/'"),
      doc: 'HTTP path of the RFC 7395 endpoint on the http listener(s) (the first host loading the plugin decides)',
    }),
    ping_interval: s.duration({
      default: '30s',
      doc: 'WebSocket ping interval; a connection that misses a pong for one interval is dropped (0s = no pings)',
    }),
    secure: s.enum(['tls', 'loopback', 'always'] as const, {
      default: 'loopback',
      doc: "which connections count as encrypted (required: STARTTLS is impossible here): tls = wss only; "
        + 'loopback = also plain ws from this machine (a TLS proxy in front); always = any (a proxy elsewhere)',
    }),
    origins: s.array(s.string(), {
      default: [],
      doc: "Origin headers accepted from browsers (e.g. https://chat.example.com); empty or '*' = any",
    }),
  }),
  setup(ctx) {
    const server = ctx.server;
    const options = ctx.options;
    const registry = perServer(servers, server, () => new HostRegistry<true>());
    const origins = options.origins.map((o) => o.toLowerCase().replace(/\/$/, ''));
    const log = ctx.log;
    const mount = (): void => {
      const wss = new WebSocketServer({
        noServer: true,
        // RFC 7395 §3.4 and the server's stanza limit: a larger frame closes with 1009.
        maxPayload: server.maxStanzaSize,
        perMessageDeflate: false,
        handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
      });
      wss.on('error', (err) => log.debug('websocket server error', { err: err.message }));
      ctx.httpUpgrade(options.path, (req, socket, head) => {
        if (!offeredProtocols(req).includes(SUBPROTOCOL)) {
          // RFC 7395 §3.1: without the xmpp subprotocol this is not an XMPP connection.
          refuse(socket, 400, 'Bad Request', "the 'xmpp' WebSocket subprotocol is required");
          return;
        }
        const origin = req.headers.origin;
        if (!originAllowed(origin, origins)) {
          refuse(socket, 403, 'Forbidden', 'origin not allowed');
          return;
        }
        if (!connectionSecure(req, options.secure)) {
          refuse(socket, 403, 'Forbidden', 'an encrypted connection (wss) is required');
          return;
        }
        wss.handleUpgrade(req, socket, head, (ws) => serve(ws, req, server, registry, options, log));
      });
      // Plain GETs (a browser opening the URL) get a hint instead of a bare 404.
      ctx.http(options.path, (req, res) => {
        const body = 'XMPP over WebSocket (RFC 7395): connect with the xmpp subprotocol\n';
        res.writeHead(req.method === 'GET' || req.method === 'HEAD' ? 426 : 405, {
          'Content-Type': 'text/plain; charset=utf-8',
          'Content-Length': String(Buffer.byteLength(body)),
          Upgrade: 'websocket',
        });
        res.end(body);
      });
    };
    registry.add(ctx.host, true, mount, (fn) => ctx.onClose(fn));
  },
});
