// XEP-0156 discovery over HTTP: /.well-known/host-meta (RFC 6415 XRD, the required form) and
// /.well-known/host-meta.json list the WebSocket and BOSH endpoints, so web clients (Converse,
// Movim) find them from the bare domain. Served with Access-Control-Allow-Origin: *, since the
// web client reading them usually lives on another origin.
//
// The plugin is loaded once per host but the paths exist once per listener: the first loaded
// instance mounts them, every instance registers its host, and the answer is chosen by the
// request's Host header. When the mounting instance unloads, another one takes the mount over.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { s } from '../lib/config/schema.js';
import type { HttpHandler, HttpRequestContext } from '../lib/net/http.js';
import { definePlugin } from '../lib/plugin/types.js';

const REL_WEBSOCKET = 'urn:xmpp:alt-connections:websocket';
const REL_BOSH = 'urn:xmpp:alt-connections:xbosh';
const XML_PATH = '/.well-known/host-meta';
const JSON_PATH = '/.well-known/host-meta.json';

interface Link {
  rel: string;
  href: string;
}

interface Registration {
  links: Link[];
  /** Mounts the two paths through this instance's context (so its unload removes them). */
  mount(): void;
}

/** Per server (each has its own HTTP router): the hosts with host_meta loaded, in load order. */
interface Shared {
  registered: Map<string, Registration>;
  /** The host whose instance holds the mount, if any. */
  mountedBy: string | undefined;
  /** The server's configured hosts, as they are now. */
  hosts(): readonly string[];
}
const servers = new WeakMap<object, Shared>();

const withHost = (template: string, host: string): string => template.replace(/\{host\}/g, host);

function checkUrl(schemes: string[]) {
  return (value: string): string | undefined => {
    if (value === '') return undefined;
    try {
      const url = new URL(withHost(value, 'example.com'));
      return schemes.includes(url.protocol) ? undefined : `must be a ${schemes.join(' or ')} URL, or empty`;
    } catch {
      return 'must be an absolute URL, or empty';
    }
  };
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

function xrd(links: Link[]): string {
  const body = links.map((l) => `  <Link rel="${escapeXml(l.rel)}" href="${escapeXml(l.href)}"/>\n`).join('');
  return `<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n${body}</XRD>\n`;
}

const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS',
  'Access-Control-Allow-Headers': 'Content-Type',
};

/**
 * The registration answering for this request: the one of its Host; for a name that is not an
 * XMPP host at all (an IP address, a proxy's name), the only registration when there is one.
 * A host that has host_meta disabled gets nothing, not another host's endpoints.
 */
function lookup(shared: Shared, url: URL): Registration | undefined {
  const name = url.hostname.toLowerCase().replace(/\.$/, '');
  const exact = shared.registered.get(name);
  if (exact) return exact;
  if (shared.hosts().includes(name)) return undefined;
  return shared.registered.size === 1 ? shared.registered.values().next().value : undefined;
}

function send(res: ServerResponse, status: number, type: string, body: string, extra: Record<string, string> = {}): void {
  const data = Buffer.from(body, 'utf8');
  res.writeHead(status, {
    ...CORS,
    'Content-Type': type,
    'Content-Length': String(data.length),
    'X-Content-Type-Options': 'nosniff',
    ...extra,
  });
  res.end(data);
}

function handler(shared: Shared, format: 'xml' | 'json'): HttpHandler {
  return (req: IncomingMessage, res: ServerResponse, ctx: HttpRequestContext) => {
    if (ctx.path !== '/') {
      send(res, 404, 'text/plain; charset=utf-8', 'not found\n');
      return;
    }
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...CORS, Allow: 'GET, HEAD, OPTIONS', 'Content-Length': '0' });
      res.end();
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { Allow: 'GET, HEAD, OPTIONS' });
      return;
    }
    const reg = lookup(shared, ctx.url);
    if (!reg) {
      send(res, 404, 'text/plain; charset=utf-8', 'no XMPP host of that name here\n');
      return;
    }
    // Short caching: endpoints change rarely, but a reload should not take a day to show.
    const caching = { 'Cache-Control': 'public, max-age=3600' };
    if (format === 'xml') send(res, 200, 'application/xrd+xml; charset=utf-8', xrd(reg.links), caching);
    else send(res, 200, 'application/json', `${JSON.stringify({ links: reg.links }, null, 2)}\n`, caching);
  };
}

export default definePlugin({
  name: 'host_meta',
  xeps: [{ xep: 156, status: 'partial', note: 'HTTP lookup (host-meta and host-meta.json); no DNS TXT records' }],
  options: s.object({
    websocket_url: s.string({
      default: 'wss://{host}:5443/xmpp-websocket',
      check: checkUrl(['wss:', 'ws:']),
      doc: 'RFC 7395 WebSocket endpoint to announce ({host} = the host name); empty = none',
    }),
    bosh_url: s.string({
      default: 'https://{host}:5443/http-bind',
      check: checkUrl(['https:', 'http:']),
      doc: 'XEP-0206 BOSH endpoint to announce ({host} = the host name); empty = none',
    }),
  }),
  setup(ctx) {
    const host = ctx.host;
    let shared = servers.get(ctx.server);
    if (!shared) {
      const server = ctx.server;
      shared = { registered: new Map(), mountedBy: undefined, hosts: () => server.hosts };
      servers.set(ctx.server, shared);
    }
    const state = shared;
    const links: Link[] = [];
    if (ctx.options.websocket_url) links.push({ rel: REL_WEBSOCKET, href: withHost(ctx.options.websocket_url, host) });
    if (ctx.options.bosh_url) links.push({ rel: REL_BOSH, href: withHost(ctx.options.bosh_url, host) });

    const registration: Registration = {
      links,
      mount() {
        ctx.http(XML_PATH, handler(state, 'xml'));
        ctx.http(JSON_PATH, handler(state, 'json'));
        state.mountedBy = host;
      },
    };
    // Registered before the mount, so this runs after the mount is undone (undo runs in
    // reverse): the next instance can then mount the same paths.
    ctx.onClose(() => {
      if (state.registered.get(host) === registration) state.registered.delete(host);
      if (state.mountedBy !== host) return;
      state.mountedBy = undefined;
      const next = state.registered.values().next().value;
      if (next) next.mount();
    });
    state.registered.set(host, registration);
    if (state.mountedBy === undefined) registration.mount();
  },
});
