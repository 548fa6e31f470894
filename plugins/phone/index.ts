// Phone-number accounts (DESIGN §5, WhatsApp/Quicksy model): the E.164 number is the account
// name, an SMS PIN proves the number, and registering on a new device replaces the old one.
// - service.ts: PINs, throttles, creating or taking over accounts (also used by `register`).
// - http.ts: the Quicksy-compatible HTTP API, mounted once per path for all hosts that share it.
// - sms.ts: email-to-SMS gateway over SMTP, or the log and a file while none is configured.
import type { HttpHandler } from '../../lib/net/http.js';
import { definePlugin } from '../../lib/plugin/types.js';
import type { ServerApi } from '../../lib/server-api.js';
import type { Json } from '../../lib/storage/types.js';
import type { PhoneApi } from './api.js';
import { phoneHttpHandler } from './http.js';
import { phoneOptions } from './options.js';
import { PinStore } from './pins.js';
import { PhoneService } from './service.js';
import { createSmsSender } from './sms.js';
import { Throttle } from './throttle.js';

/**
 * One HTTP mount serves every host whose `http_path` is the same (the listener is shared), per
 * server. The host that mounted it hands the mount over to another one when it unloads.
 */
interface SharedMount {
  handlers: Map<string, HttpHandler>;
  /** Mount functions of the hosts that can take over, in load order. */
  mounters: Map<string, () => void>;
  mountedBy: string | undefined;
}

const mounts = new WeakMap<ServerApi, Map<string, SharedMount>>();

function sharedMount(server: ServerApi, path: string): SharedMount {
  let byPath = mounts.get(server);
  if (!byPath) {
    byPath = new Map();
    mounts.set(server, byPath);
  }
  let m = byPath.get(path);
  if (!m) {
    m = { handlers: new Map(), mounters: new Map(), mountedBy: undefined };
    byPath.set(path, m);
  }
  return m;
}

/** The host a request is for: its Host header names <host> or api.<host>; else the first configured host. */
function dispatcher(server: ServerApi, m: SharedMount): HttpHandler {
  return (req, res, ctx) => {
    const name = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
    const handler = m.handlers.get(name)
      ?? (name.startsWith('api.') ? m.handlers.get(name.slice(4)) : undefined)
      ?? server.hosts.map((h) => m.handlers.get(h)).find((h) => h !== undefined);
    if (!handler) throw new Error('no host serves the phone API');
    return handler(req, res, ctx);
  };
}

export default definePlugin({
  name: 'phone',
  optional: ['roster'],
  options: phoneOptions,
  async setup(ctx) {
    const o = ctx.options;
    const pins = await PinStore.open(ctx.store.map<Json>('phone_pins'), ctx.store.map<string>('phone_secrets'), ctx.host,
      o.pin_lifetime, o.pin_attempts);
    const sms = createSmsSender(o.sms, ctx.host, ctx.log, ctx.server.dataDir);
    ctx.onClose(() => sms.close());
    const svc = new PhoneService({
      ctx,
      pins,
      throttle: new Throttle(ctx.store.map<number>('phone_throttle'), ctx.host),
      activity: ctx.store.map<number>('phone_activity'),
      sms,
    });
    ctx.provide('phone', svc satisfies PhoneApi);

    // Last use of each phone account, for reclaim_after: logins and logouts are what the server
    // sees of a client's use without writing on every stanza.
    const touch = ({ session }: { session: { jid?: { local: string } | undefined } }) => {
      if (session.jid) void svc.touch(session.jid.local).catch((err: unknown) => ctx.log.warn('could not record activity', { err }));
    };
    ctx.hook('resource-bind', touch);
    ctx.hook('resource-unbind', touch);

    if (o.api) {
      const m = sharedMount(ctx.server, o.http_path);
      m.handlers.set(ctx.host, phoneHttpHandler(svc, o));
      // Registered before the mount, so it runs after the unmount at unload (undo runs in
      // reverse): another host can then mount the same path again.
      ctx.onClose(() => {
        m.handlers.delete(ctx.host);
        m.mounters.delete(ctx.host);
        if (m.mountedBy !== ctx.host) return;
        m.mountedBy = undefined;
        m.mounters.values().next().value?.();
      });
      const mount = (): void => {
        ctx.http(o.http_path, dispatcher(ctx.server, m), { maxBodySize: o.max_password_size });
        m.mountedBy = ctx.host;
      };
      m.mounters.set(ctx.host, mount);
      if (m.mountedBy === undefined) mount();
    }
  },
});
