// Options of the `phone` module (DESIGN §9): SMS transport, PIN rules, throttles, the HTTP API.
import { s, type Infer } from '../../lib/config/schema.js';
import { checkCountryList } from './numbers.js';

const rule = s.object({
  window: s.duration({ min: '1ms', doc: 'the window opens with the first attempt and lasts this long' }),
  max: s.int({ min: 1, doc: 'attempts allowed in one window' }),
});

const rules = (def: Array<{ window: string; max: number }>, doc: string) => s.array(rule, { default: def, doc });

function checkTemplate(t: string): string | undefined {
  return t.includes('{pin}') ? undefined : 'must contain {pin}';
}

const smtp = s.object({
  host: s.string({ minLength: 1, doc: 'SMTP server of the email-to-SMS gateway' }),
  port: s.port({ default: 587, doc: '587 for submission with STARTTLS, 465 for implicit TLS' }),
  security: s.enum(['starttls', 'tls', 'opportunistic', 'none'], {
    default: 'starttls',
    doc: 'starttls = require STARTTLS; tls = TLS from the first byte (port 465); opportunistic = STARTTLS when offered; none = plaintext (local relays only)',
  }),
  user: s.optional(s.string({ minLength: 1, doc: 'SMTP login' })),
  password: s.optional(s.string({ minLength: 1, doc: 'SMTP password' })),
  reject_unauthorized: s.bool({ default: true, doc: 'check the SMTP server certificate' }),
  timeout: s.duration({ default: '30s', min: '100ms', max: '10m', doc: 'connect, greeting and idle limit of one SMTP exchange' }),
});

export const phoneOptions = s.object({
  api: s.bool({ default: true, doc: 'serve the Quicksy-compatible registration API on the HTTP listener' }),
  http_path: s.string({
    default: '/api/',
    pattern: /^\/(?:[A-Za-z0-9._~-]+\/)*$/,
    doc: 'where the API is mounted (/ for the root of a dedicated api.<host> name); mounted once for all hosts that share the path, and the request\'s Host header (<host> or api.<host>) picks the host, else the first configured one',
  }),
  allowed_countries: s.array(s.string({ minLength: 2 }), {
    default: [],
    check: checkCountryList,
    doc: 'numbers accepted for registration: region codes (DE) or calling codes (+49); empty = all countries',
  }),
  pin_lifetime: s.duration({ default: '5m', min: '100ms', max: '1d', doc: 'how long a PIN sent by SMS stays valid' }),
  pin_attempts: s.int({ default: 3, min: 1, max: 10, doc: 'wrong PINs allowed; the last one invalidates the PIN' }),
  reclaim_after: s.duration({
    default: '28d',
    doc: 'an account not used for this long is deleted and created fresh when its number registers again (numbers are reassigned); 0 = never',
  }),
  prevent_takeover: s.bool({
    default: false,
    doc: 'refuse (409) to register a number that is logged in right now, instead of replacing its credentials',
  }),
  min_client_version: s.string({
    default: '0.0.0',
    pattern: /^\d+\.\d+\.\d+$/,
    doc: 'lowest client version (User-Agent: Name/x.y.z) the API serves; older or unparsable ones get 403',
  }),
  client_names: s.array(s.string({ minLength: 1 }), {
    default: [],
    doc: 'client names (the Name in Name/x.y.z) the API serves, e.g. [Quicksy]; empty = any name',
  }),
  max_password_size: s.size({ default: '1KiB', min: 1, max: '64KiB', doc: 'largest password body of POST /password' }),
  trusted_proxies: s.array(s.string({ minLength: 1 }), {
    default: ['127.0.0.1', '::1'],
    doc: 'addresses whose X-Real-IP header names the client (a reverse proxy in front of the HTTP listener)',
  }),
  throttle: s.object({
    number: rules([{ window: '2m', max: 1 }, { window: '8h', max: 2 }], 'SMS per number'),
    ip: rules([{ window: '5m', max: 5 }, { window: '1d', max: 100 }], 'PIN requests per client address (API requests, or SMS asked for by in-band registration)'),
    installation: rules([{ window: '1d', max: 3 }], 'SMS per Installation-Id (API)'),
    password_ip: rules([{ window: '5m', max: 16 }], 'POST /password per client address'),
  }),
  sms: s.object({
    smtp: s.optional(smtp),
    from: s.string({ default: 'parley@{host}', minLength: 3, doc: 'sender address of the gateway emails ({host} = the host name)' }),
    to: s.string({
      default: '{number}@sms.example',
      pattern: /\{(?:number|digits)\}/,
      doc: 'gateway address per number: {number} = E.164 with +, {digits} = without it',
    }),
    subject: s.string({ default: '', doc: 'subject of the gateway emails (some gateways read a password from it)' }),
    text: s.string({ default: 'Your {host} code: {pin}', check: checkTemplate, doc: 'the SMS ({pin}, {host}); keep it short (160 characters in GSM-7)' }),
    texts: s.record(s.string({ check: checkTemplate }), {
      default: {},
      keyName: 'language',
      doc: 'the SMS per language of the request (Accept-Language primary tag, e.g. de), instead of text',
    }),
    app_hash: s.optional(s.string({
      pattern: /^[A-Za-z0-9+/]{11}$/,
      doc: 'Android SMS Retriever hash of the app (11 characters), added as the last line so the app reads the PIN itself',
    })),
    log_file: s.string({
      default: 'sms.log',
      minLength: 1,
      doc: 'without smtp: every SMS is logged and appended to this file (relative to data_dir)',
    }),
  }),
});

export type PhoneOptions = Infer<typeof phoneOptions>;
