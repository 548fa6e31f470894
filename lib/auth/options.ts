// Maps the `auth` section of the configuration to what a client stream needs. Read for every new
// connection, so a reload changes the limits of later logins; the counters themselves persist.
import type { CoreConfig } from '../config/core.js';
import type { ChannelBindingType } from '../sasl/channel-binding.js';
import type { ThrottleSettings } from './throttle.js';

export interface C2SAuthOptions {
  channelBinding: readonly ChannelBindingType[];
  throttle: ThrottleSettings;
  failureDelayMs: number;
}

export function c2sAuthOptions(auth: CoreConfig['auth']): C2SAuthOptions {
  const t = auth.throttle;
  return {
    channelBinding: auth.channel_binding,
    throttle: {
      ipFailures: t.ip_failures,
      ipWindowMs: t.ip_window,
      accountFailures: t.account_failures,
      accountWindowMs: t.account_window,
      trustForMs: t.trust_address_for,
      maxEntries: t.max_entries,
    },
    failureDelayMs: t.failure_delay,
  };
}
