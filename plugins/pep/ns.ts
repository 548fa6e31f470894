// Namespaces and error helpers shared by the PEP plugin's files.
import xml from '@xmpp/xml';
import { StanzaError, type StanzaErrorCondition } from '../../lib/errors.js';

export const NS_PUBSUB = 'http://jabber.org/protocol/pubsub';
export const NS_PUBSUB_OWNER = 'http://jabber.org/protocol/pubsub#owner';
export const NS_PUBSUB_EVENT = 'http://jabber.org/protocol/pubsub#event';
export const NS_PUBSUB_ERRORS = 'http://jabber.org/protocol/pubsub#errors';
export const NS_NODE_CONFIG = 'http://jabber.org/protocol/pubsub#node_config';
export const NS_PUBLISH_OPTIONS = 'http://jabber.org/protocol/pubsub#publish-options';
export const NS_META_DATA = 'http://jabber.org/protocol/pubsub#meta-data';
export const NS_DATA = 'jabber:x:data';
export const NS_CAPS = 'http://jabber.org/protocol/caps';
export const NS_DELAY = 'urn:xmpp:delay';
export const NS_ADDRESS = 'http://jabber.org/protocol/address';

export const NS_AVATAR_DATA = 'urn:xmpp:avatar:data';
export const NS_AVATAR_METADATA = 'urn:xmpp:avatar:metadata';
export const NS_PEP_VCARD_CONVERSION = 'urn:xmpp:pep-vcard-conversion:0';
export const NS_BOOKMARKS2 = 'urn:xmpp:bookmarks:1';
export const NS_BOOKMARKS_LEGACY = 'storage:bookmarks';
export const NS_BOOKMARKS_CONVERSION = 'urn:xmpp:bookmarks-conversion:0';
export const NS_VCARD4 = 'urn:xmpp:vcard4';
export const NS_NICK = 'http://jabber.org/protocol/nick';

/** The XEP-0060 features this service implements, advertised on every account (XEP-0163 §8.1). */
export const PUBSUB_FEATURES = [
  'access-open', 'access-presence', 'access-roster', 'access-whitelist',
  'auto-create', 'auto-subscribe', 'config-node', 'config-node-max', 'create-and-configure',
  'create-nodes', 'delete-items', 'delete-nodes', 'filtered-notifications', 'item-ids',
  'last-published', 'manage-subscriptions', 'member-affiliation', 'meta-data', 'modify-affiliations',
  'multi-items', 'outcast-affiliation', 'persistent-items', 'presence-notifications', 'publish',
  'publish-options', 'purge-nodes', 'retract-items', 'retrieve-affiliations', 'retrieve-default',
  'retrieve-items', 'retrieve-subscriptions', 'subscribe', 'subscription-notifications',
].map((f) => `${NS_PUBSUB}#${f}`);

/** A stanza error with a pubsub-specific condition (XEP-0060 §7-§8 error cases). */
export function pubsubError(
  condition: StanzaErrorCondition,
  specific: string | undefined,
  text?: string,
  attrs: Record<string, string> = {},
): StanzaError {
  const extra = specific ? [xml(specific, { xmlns: NS_PUBSUB_ERRORS, ...attrs })] : [];
  return new StanzaError(condition, text, { extra });
}

/** feature-not-implemented with <unsupported feature='…'/> (XEP-0060 §7.1.3.2 and others). */
export function unsupported(feature: string, text?: string): StanzaError {
  return pubsubError('feature-not-implemented', 'unsupported', text, { feature });
}
