// Configuration of external components (XEP-0114): the `components:` record (domain -> secret and
// limits) and the connection limits under `limits:`. lib/config/core.ts imports these, so the
// component options live next to the code that uses them.
import { MAX_TIMER_MS, s, type Infer, type Issue } from '../config/schema.js';

const component = s.object({
  secret: s.string({
    minLength: 1,
    doc: 'shared secret of the handshake; make it long and random (e.g. openssl rand -hex 32)',
  }),
  // A token bucket: a component may send this many stanzas in a burst, refilled at this rate.
  // Past it the server stops reading from the component's socket for a while (TCP backpressure),
  // so nothing is refused or lost; a busy component only slows down.
  stanza_rate: s.int({
    default: 1000,
    min: 0,
    doc: 'stanzas per second the component may send (bursts up to one second\'s worth); more are read later; 0 = no limit',
  }),
});

/** `components:` — key: the component's domain. */
export const componentsSchema = s.record(component, {
  default: {},
  key: s.domain(),
  keyName: 'domain',
  doc: 'external components (XEP-0114) allowed to connect to a component listener, by domain',
});

export type ComponentConfig = Infer<typeof component>;
export type ComponentsConfig = Infer<typeof componentsSchema>;

/** Fields spread into `limits:`. */
export const componentLimits = {
  component_handshake_timeout: s.duration({
    default: '30s',
    min: '1s',
    max: MAX_TIMER_MS,
    doc: 'time from TCP connect to a successful component handshake',
  }),
  // Components speak no keepalive of their own, and one that died without closing its TCP
  // connection would hold its domain (a new connection gets `conflict`) until the kernel gave up
  // on the socket, which takes many minutes. So a silent component is pinged (XEP-0199) and
  // dropped when even the ping gets no byte back.
  component_ping_interval: s.duration({
    default: '1m',
    min: 0,
    max: MAX_TIMER_MS,
    doc: 'after this long without a byte from a component, ping it; no byte within the same time again closes it; 0 = never',
  }),
  component_send_queue: s.size({
    default: '4MiB',
    min: '16KiB',
    doc: 'outgoing bytes buffered for a component before it is disconnected as too slow',
  }),
};

/**
 * A component domain must not be a host: stanzas for it would have two owners. (Service domains
 * of modules, e.g. conference.<host>, are only known once the modules are loaded; the service
 * refuses those at boot.)
 */
export function checkComponentDomains(
  v: { hosts: readonly string[]; components: Readonly<Record<string, unknown>> },
  issue: Issue,
): void {
  for (const domain of Object.keys(v.components)) {
    if (v.hosts.includes(domain)) {
      issue(['components', domain], `'${domain}' is one of hosts; a component needs a domain of its own`, 'key');
    }
  }
}
