// The built-in plugin catalog: module name (as used under `modules:`) -> its definition.
// Loaded lazily so a server only imports what its config enables.
import type { PluginDefinition } from '../lib/plugin/types.js';

type Loader = () => Promise<PluginDefinition<any>>;

const mod = (load: () => Promise<{ default: PluginDefinition<any> }>): Loader => async () => (await load()).default;

export const builtinPlugins: ReadonlyMap<string, Loader> = new Map<string, Loader>([
  ['disco', mod(() => import('./disco.js'))],
  ['ping', mod(() => import('./ping.js'))],
  ['version', mod(() => import('./version.js'))],
  ['time', mod(() => import('./time.js'))],
  ['caps', mod(() => import('./caps.js'))],
  ['uptime', mod(() => import('./uptime.js'))],
  ['contact_info', mod(() => import('./contact_info.js'))],
  ['extdisco', mod(() => import('./extdisco.js'))],
  ['carbons', mod(() => import('./carbons.js'))],
  ['csi', mod(() => import('./csi.js'))],
  ['roster', mod(() => import('./roster/index.js'))],
  ['presence', mod(() => import('./presence/index.js'))],
  ['blocking', mod(() => import('./blocking/index.js'))],
  ['vcard', mod(() => import('./vcard.js'))],
  ['private', mod(() => import('./private.js'))],
  ['last', mod(() => import('./last.js'))],
  ['muc', mod(() => import('./muc/index.js'))],
  ['http_upload', mod(() => import('./http_upload/index.js'))],
  ['host_meta', mod(() => import('./host_meta.js'))],
  ['pep', mod(() => import('./pep/index.js'))],
  ['mam', mod(() => import('./mam/index.js'))],
  ['push', mod(() => import('./push/index.js'))],
  ['phone', mod(() => import('./phone/index.js'))],
  ['register', mod(() => import('./register/index.js'))],
  ['contacts', mod(() => import('./contacts/index.js'))],
  ['smacks', mod(() => import('./smacks.js'))],
  ['offline', mod(() => import('./offline/index.js'))],
  ['websocket', mod(() => import('./websocket/index.js'))],
  ['bosh', mod(() => import('./bosh/index.js'))],
]);
