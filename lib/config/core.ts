// The top-level configuration (the ejabberd.yml shape: hosts, listen, certfiles, storage, modules,
// host_config, limits). config/parley.example.yml documents every key below; a test keeps the two
// in step. Paths are made absolute by the loader (lib/config/load.ts), not here.
import { isIP } from 'node:net';
import { MAX_TIMER_MS, s, type Infer } from './schema.js';
import { s2sSchema } from '../s2s/config.js';
import { checkComponentDomains, componentLimits, componentsSchema } from '../component/config.js';

const listener = s.object({
  port: s.port({ doc: 'TCP port; 0 picks a free one (tests)' }),
  ip: s.string({
    default: '::',
    doc: "address to bind; '::' is every IPv4 and IPv6 address",
    check: (v) => (isIP(v) ? undefined : `expected an IP address such as '::', '0.0.0.0' or '127.0.0.1', got ${JSON.stringify(v)}`),
  }),
  module: s.enum(['c2s', 's2s', 'http', 'component'], { doc: 'what the port serves' }),
  tls: s.bool({ default: false, doc: 'direct TLS from the first byte (XEP-0368 for c2s; HTTPS for http)' }),
  starttls_required: s.bool({ default: true, doc: 'c2s/s2s: refuse to authenticate before STARTTLS (ignored with tls: true)' }),
  max_connections: s.int({ default: 10000, min: 1, doc: 'open connections on this port; more are refused' }),
  max_connections_per_ip: s.int({ default: 100, min: 1, doc: 'open connections from one address on this port' }),
});

/** One duration bounded by what Node timers can wait (longer ones would fire at once). */
const timer = (def: string, doc: string, min: number | string = 0) => s.duration({ default: def, min, max: MAX_TIMER_MS, doc });

const limits = s.object({
  // RFC 6120 §13.12: servers must accept stanzas of at least 10000 bytes.
  max_stanza_size: s.size({ default: '256KiB', min: 10000, doc: 'largest stanza a client may send; larger closes the stream (policy-violation)' }),
  max_xml_depth: s.int({ default: 64, min: 8, doc: 'deepest element nesting within a stanza' }),
  max_attributes: s.int({ default: 64, min: 8, doc: 'most attributes on one element' }),
  max_token_size: s.size({ default: '128KiB', min: '1KiB', doc: 'longest single name, attribute value or text run' }),
  c2s_handshake_timeout: timer('60s', 'time from TCP connect to a bound resource', '1s'),
  // Mobile clients ping at most every 5 minutes when idle (Conversations: 300 s), so 10 minutes
  // of silence means a dead connection; stream management then keeps the session for resumption.
  c2s_idle_timeout: timer('10m', 'close a client connection after this long without a byte from it; 0 = never'),
  c2s_send_queue: s.size({ default: '1MiB', min: '16KiB', doc: 'outgoing bytes buffered for a client before it is closed as too slow' }),
  c2s_max_auth_failures: s.int({ default: 5, min: 1, max: 100, doc: 'failed SASL attempts on one stream before it is closed' }),
  http_max_header_size: s.size({ default: '16KiB', min: '1KiB', doc: 'largest HTTP request head' }),
  http_max_body_size: s.size({ default: '1MiB', doc: 'largest HTTP request body, unless a handler sets its own (uploads do)' }),
  http_request_timeout: timer('10m', 'time to receive a whole HTTP request (uploads included: a large file over a slow mobile link takes minutes); 0 = no limit'),
  http_headers_timeout: timer('10s', 'time to receive the HTTP request head', '1s'),
  http_keepalive_timeout: timer('5s', 'idle time before a kept-alive HTTP connection is closed; 0 = no keep-alive'),
  ...componentLimits,
}, {
  refine: (v, issue) => {
    if (v.max_token_size > v.max_stanza_size) issue(['max_token_size'], 'must not be larger than max_stanza_size');
    // Node refuses a head timeout longer than the whole-request timeout.
    if (v.http_request_timeout > 0 && v.http_headers_timeout > v.http_request_timeout) {
      issue(['http_headers_timeout'], 'must not be longer than http_request_timeout');
    }
  },
});

/**
 * A module's entry under `modules:`: its option map, nothing (`ping:` = defaults) or `false`
 * (disabled, e.g. per host). Plugins validate the option map against their own schema.
 */
const moduleOptions = s.raw({
  doc: 'option map, empty for defaults, or false to disable',
  check: (v) => (v === null || v === false || (typeof v === 'object' && !Array.isArray(v))
    ? undefined
    : `expected a mapping of module options, nothing (defaults) or false (disabled), got ${Array.isArray(v) ? 'a list' : JSON.stringify(v)}`),
});

export const coreSchema = s.object({
  hosts: s.array(s.domain(), { default: ['localhost'], minLength: 1, unique: true, doc: 'XMPP domains served' }),
  data_dir: s.string({ default: 'data', minLength: 1, doc: 'embedded store, generated certificates, admin socket, SMS log (relative to the working directory)' }),
  log: s.object({
    level: s.enum(['debug', 'info', 'warn', 'error'], { default: 'info', doc: 'lowest level written' }),
    format: s.enum(['auto', 'json', 'pretty'], { default: 'auto', doc: 'auto = pretty on a terminal, JSON lines otherwise' }),
  }),
  certfiles: s.array(s.string({ minLength: 1 }), {
    default: [],
    unique: true,
    doc: 'PEM files, each with a certificate chain and its key (relative to the working directory); none = self-signed in data_dir',
  }),
  listen: s.array(listener, {
    default: [{ port: 5222, module: 'c2s' }, { port: 5443, module: 'http', tls: true }],
    doc: 'ports to listen on',
  }),
  storage: s.object({
    driver: s.enum(['embedded', 'mongodb'], { default: 'embedded', doc: 'embedded = zero-setup file in data_dir; mongodb for production' }),
    path: s.optional(s.string({ minLength: 1, doc: 'embedded: database file, relative to data_dir (default parley.db)' })),
    commit_batch: s.optional(s.int({
      min: 1,
      max: 100_000,
      doc: 'embedded: most writes one commit covers (default 256); writes of one event-loop turn share a commit up to this',
    })),
    uri: s.optional(s.string({ pattern: /^mongodb(\+srv)?:\/\//, doc: 'mongodb: connection string (mongodb://...)' })),
    database: s.optional(s.string({ minLength: 1, doc: 'mongodb: database name (default: the one in the uri, else parley)' })),
  }, {
    refine: (v, issue) => {
      if (v.driver === 'mongodb') {
        if (v.uri === undefined) issue(['uri'], 'required when driver is mongodb');
        if (v.path !== undefined) issue(['path'], 'only used by the embedded driver (driver is mongodb)', 'key');
        if (v.commit_batch !== undefined) issue(['commit_batch'], 'only used by the embedded driver (driver is mongodb)', 'key');
      } else {
        // A uri without `driver: mongodb` would otherwise be silently ignored.
        if (v.uri !== undefined) issue(['uri'], 'only used by the mongodb driver (add driver: mongodb)', 'key');
        if (v.database !== undefined) issue(['database'], 'only used by the mongodb driver (add driver: mongodb)', 'key');
      }
    },
  }),
  auth: s.object({
    scram_iterations: s.int({ default: 4096, min: 4096, doc: 'PBKDF2 rounds for new and changed passwords (RFC 7677 minimum 4096)' }),
    // Every mechanism the server implements, strongest first: the default offer and its order.
    mechanisms: s.array(s.enum([
      'SCRAM-SHA-512-PLUS', 'SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-512', 'SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN',
    ]), {
      default: ['SCRAM-SHA-512-PLUS', 'SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-512', 'SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN'],
      minLength: 1,
      unique: true,
      doc: 'SASL mechanisms offered, in this order (PLAIN only over TLS, -PLUS only over TLS with a channel binding type)',
    }),
    channel_binding: s.array(s.enum(['tls-exporter', 'tls-server-end-point']), {
      default: ['tls-exporter', 'tls-server-end-point'],
      unique: true,
      doc: 'channel binding types for the -PLUS mechanisms (XEP-0440); tls-exporter only on TLS 1.3; none = no -PLUS',
    }),
    // Throttling of failed logins. Each limit is a bucket of `*_failures` attempts that refills
    // evenly over `*_window`: a burst of that many failures, then one more per window/failures.
    // A full bucket lets a legitimate user in after a few typos; an empty one slows a guesser
    // without locking the account for good. Counters live in this process's memory.
    throttle: s.object({
      ip_failures: s.int({ default: 30, min: 1, doc: 'failed logins from one address (IPv6: its /64) before further attempts from it are refused' }),
      ip_window: timer('10m', 'time in which ip_failures failures are forgiven again', '1s'),
      account_failures: s.int({ default: 10, min: 1, doc: 'failed logins for one account (from anywhere) before further attempts for it are refused' }),
      account_window: timer('1h', 'time in which account_failures failures are forgiven again', '1s'),
      // After a successful login its address may keep trying that account despite the account
      // limit, so a guesser elsewhere cannot lock the owner out.
      trust_address_for: timer('7d', 'after a successful login, its address skips that account\'s limit for this long; 0 = never'),
      failure_delay: s.duration({ default: '1s', min: 0, max: '30s', doc: 'wait before answering a failed or refused login; 0 = answer at once' }),
      max_entries: s.int({ default: 100000, min: 100, doc: 'addresses and accounts tracked at most; the least recently failed are forgotten first' }),
    }),
  }),
  limits,
  s2s: s2sSchema,
  modules: s.record(moduleOptions, {
    default: { disco: {}, ping: {}, version: {}, time: {}, caps: {}, uptime: {}, roster: {}, presence: {}, blocking: {}, vcard: {}, private: {}, last: {}, carbons: {}, csi: {}, smacks: {}, offline: {}, mam: {}, push: {}, pep: {}, muc: {}, http_upload: {}, host_meta: {}, phone: {}, register: {}, contacts: {}, websocket: {}, bosh: {} },
    keyName: 'module',
    doc: 'modules enabled on every host, with their options',
  }),
  host_config: s.record(s.object({
    modules: s.optional(s.record(moduleOptions, { keyName: 'module', doc: 'per-host module options: replace the global entry; false disables' })),
  }), {
    default: {},
    key: s.domain(),
    keyName: 'host',
    doc: 'per-host settings; each host must be listed in hosts',
  }),
  components: componentsSchema,
  admin: s.object({
    socket: s.optional(s.string({ minLength: 1, doc: 'parleyctl socket (default: <data_dir>/parleyctl.sock)' })),
  }),
}, {
  refine: (v, issue) => {
    const seen = new Map<string, number>();
    v.listen.forEach((l, i) => {
      // Port 0 asks the system for a fresh port each time, so it can repeat.
      const key = `${l.ip} ${l.port}`;
      const first = seen.get(key);
      if (l.port !== 0 && first !== undefined) issue(['listen', i, 'port'], `port ${l.port} on ${l.ip} is already used by listen.${first}`);
      seen.set(key, i);
    });
    for (const host of Object.keys(v.host_config)) {
      if (!v.hosts.includes(host)) issue(['host_config', host], `host '${host}' is not listed in hosts (${v.hosts.join(', ')})`, 'key');
    }
    checkComponentDomains(v, issue);
  },
});

export type CoreConfig = Infer<typeof coreSchema>;
