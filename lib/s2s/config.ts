// The `s2s:` section of the configuration: federation with other XMPP servers (RFC 6120 server
// streams, XEP-0178 SASL EXTERNAL, XEP-0220 dialback, XEP-0368 Direct TLS). Plaintext is not an
// option: every server stream is encrypted before anything is authenticated.
import { MAX_TIMER_MS, s, type Infer } from '../config/schema.js';

const timer = (def: string, doc: string, min: number | string = 0) => s.duration({ default: def, min, max: MAX_TIMER_MS, doc });

/** How a remote domain must prove who it is, and how we prove it to it. */
const authPolicy = s.enum(['dialback', 'certificate'], {
  default: 'dialback',
  doc: 'dialback = SASL EXTERNAL when the certificate validates, else Server Dialback; certificate = only a valid certificate',
});

const route = s.object({
  host: s.string({ minLength: 1, doc: 'host name or IP address to connect to' }),
  port: s.port({ default: 5269, doc: 'TCP port' }),
  tls: s.enum(['starttls', 'direct'], { default: 'starttls', doc: 'starttls, or direct = TLS from the first byte (XEP-0368)' }),
});

export const s2sSchema = s.object({
  enabled: s.bool({ default: true, doc: 'send stanzas for remote domains to other servers (incoming streams need an s2s listener)' }),
  auth: authPolicy,
  domains: s.record(s.object({ auth: authPolicy }), {
    default: {},
    key: s.domain(),
    keyName: 'domain',
    doc: 'per remote domain overrides of auth',
  }),
  routes: s.record(route, {
    default: {},
    key: s.domain(),
    keyName: 'domain',
    doc: 'static routes: where to connect for a remote domain, instead of asking DNS',
  }),
  ca_files: s.array(s.string({ minLength: 1 }), {
    default: [],
    unique: true,
    doc: 'PEM files of certificate authorities trusted for server certificates, besides the system ones',
  }),
  system_cas: s.bool({ default: true, doc: "trust the certificate authorities built into Node (Mozilla's list)" }),
  dialback_secret: s.optional(s.string({ minLength: 16, doc: 'key for dialback keys (XEP-0185); by default one is generated and kept in the store' })),
  connect_timeout: timer('10s', 'time to open the TCP connection to one address of a remote server', '100ms'),
  setup_timeout: timer('30s', 'time for DNS, connecting, TLS and authentication of an outgoing stream; queued stanzas then bounce with remote-server-timeout', '100ms'),
  idle_timeout: timer('10m', 'close a server stream after this long without a stanza; 0 = never'),
  handshake_timeout: timer('30s', 'time an incoming stream has to authenticate', '100ms'),
  max_queue: s.int({ default: 1000, min: 1, doc: 'stanzas held for one remote domain while its stream is set up; more bounce' }),
  max_outgoing_streams: s.int({ default: 1000, min: 1, doc: 'outgoing server connections, dialback verifications included' }),
  max_incoming_streams: s.int({ default: 1000, min: 1, doc: 'incoming server streams over all s2s listeners' }),
  max_verifications: s.int({ default: 100, min: 1, doc: 'dialback verifications waiting for an answer at once; more are refused' }),
  stanza_rate: s.int({ default: 500, min: 1, doc: 'stanzas per second one incoming stream may send on average' }),
  stanza_burst: s.int({ default: 2000, min: 1, doc: 'stanzas one incoming stream may send at once above the rate; past it the stream is read more slowly' }),
});

export type S2SConfig = Infer<typeof s2sSchema>;
export type S2SAuthPolicy = S2SConfig['auth'];
export type S2SRoute = S2SConfig['routes'][string];

/** The policy for one remote domain: its override, else the default. */
export function policyFor(config: S2SConfig, domain: string): S2SAuthPolicy {
  return config.domains[domain]?.auth ?? config.auth;
}
