// XEP-0215 External Service Discovery (urn:xmpp:extdisco:2): tells this host's users which STUN
// and TURN servers to use for audio and video calls (Jingle), as Conversations, Dino and Monal
// ask before a call. TURN servers take time-limited credentials made with a secret shared with
// them (the "TURN REST API" scheme of coturn's static-auth-secret, also used by Prosody's
// mod_external_services and ejabberd's mod_stun_disco): username = expiry (Unix seconds) ":"
// the user's bare JID, password = base64(HMAC-SHA1(secret, username)). The TURN server checks
// the password and the expiry on its own, so nothing is stored here.
import xml from '@xmpp/xml';
import { createHmac } from 'node:crypto';
import type { Element } from 'ltx';
import { s, type Infer } from '../lib/config/schema.js';
import { StanzaError } from '../lib/errors.js';
import { definePlugin, type IqRequest } from '../lib/plugin/types.js';

export const NS_EXTDISCO = 'urn:xmpp:extdisco:2';
const SERVICE_TYPES = ['stun', 'stuns', 'turn', 'turns'] as const;

const service = s.object({
  type: s.enum(SERVICE_TYPES, { doc: 'the protocol of the service' }),
  host: s.string({ minLength: 1, doc: 'host name or IP address the client connects to' }),
  port: s.port({ default: 3478, doc: 'its port (5349 is usual for stuns and turns)' }),
  transport: s.enum(['udp', 'tcp'], { default: 'udp', doc: 'udp or tcp' }),
  name: s.optional(s.string({ minLength: 1, doc: 'a name shown to users' })),
});

export const extdiscoOptions = s.object({
  services: s.array(service, { default: [], doc: 'STUN and TURN services offered to this host\'s users' }),
  secret: s.optional(s.string({
    minLength: 16,
    doc: 'shared secret of the TURN servers (coturn: static-auth-secret); without it TURN services are listed without credentials',
  })),
  credentials_lifetime: s.duration({ default: '1d', min: '1m', doc: 'how long the TURN credentials given to a client stay valid' }),
});

type Service = Infer<typeof service>;

const needsCredentials = (svc: Service): boolean => svc.type === 'turn' || svc.type === 'turns';

export default definePlugin({
  name: 'extdisco',
  xeps: [{ xep: 215, version: '1.0.0', status: 'complete', note: 'static services; TURN credentials from a shared secret' }],
  options: extdiscoOptions,
  setup(ctx) {
    const o = ctx.options;
    ctx.feature(NS_EXTDISCO);

    /** Only this host's own users: TURN relays traffic the operator pays for. */
    const localUser = (req: IqRequest): string => {
      if (!req.session || req.from.domain !== ctx.host || req.from.local === '') {
        throw new StanzaError('forbidden', `only users of ${ctx.host} may use its call servers`);
      }
      return req.from.bare;
    };

    const describe = (svc: Service, user: string, now: number): Element => {
      const el = xml('service', { type: svc.type, host: svc.host, port: String(svc.port), transport: svc.transport });
      if (svc.name !== undefined) el.attrs.name = svc.name;
      if (needsCredentials(svc) && o.secret !== undefined) {
        const expires = Math.floor((now + o.credentials_lifetime) / 1000);
        const username = `${expires}:${user}`;
        el.attrs.username = username;
        el.attrs.password = createHmac('sha1', o.secret).update(username).digest('base64');
        el.attrs.expires = new Date(expires * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
      }
      return el;
    };

    /** A `type` filter, when given, must name a known service type (XEP-0215 §3.1). */
    const typeFilter = (payload: Element): string | undefined => {
      const type = payload.attrs.type;
      if (type !== undefined && !(SERVICE_TYPES as readonly string[]).includes(type)) {
        throw new StanzaError('bad-request', `unknown service type ${type}`);
      }
      return type;
    };

    ctx.iq.get(NS_EXTDISCO, 'services', (req) => {
      const user = localUser(req);
      const type = typeFilter(req.payload);
      const now = Date.now();
      const answer = xml('services', type !== undefined ? { xmlns: NS_EXTDISCO, type } : { xmlns: NS_EXTDISCO });
      for (const svc of o.services) if (type === undefined || svc.type === type) answer.append(describe(svc, user, now));
      return answer;
    }, { to: ['host'] });

    // §3.3: fresh credentials for one service, named by host and type (and port when given).
    ctx.iq.get(NS_EXTDISCO, 'credentials', (req) => {
      const user = localUser(req);
      const wanted = req.payload.getChild('service');
      if (!wanted?.attrs.host) throw new StanzaError('bad-request', 'name the service with its host and type');
      const port = wanted.attrs.port === undefined ? undefined : Number(wanted.attrs.port);
      const matching = o.services.filter((svc) => svc.host === wanted.attrs.host
        && (wanted.attrs.type === undefined || svc.type === wanted.attrs.type)
        && (port === undefined || svc.port === port));
      if (matching.length === 0) throw new StanzaError('item-not-found', 'no such service');
      const now = Date.now();
      return xml('credentials', { xmlns: NS_EXTDISCO }, ...matching.map((svc) => describe(svc, user, now)));
    }, { to: ['host'] });
  },
});
