// Protocol and boot errors. Every error carries a stable code and its protocol consequence, so the
// owner of a stream or stanza acts on it exactly once (the ws lesson in DESIGN §1).
import xml from '@xmpp/xml';
import type { Element } from 'ltx';

export const NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas';
export const NS_STREAMS = 'urn:ietf:params:xml:ns:xmpp-streams';

/** RFC 6120 §4.9.3 stream error conditions. */
export type StreamErrorCondition =
  | 'bad-format' | 'bad-namespace-prefix' | 'conflict' | 'connection-timeout' | 'host-gone'
  | 'host-unknown' | 'improper-addressing' | 'internal-server-error' | 'invalid-from'
  | 'invalid-namespace' | 'invalid-xml' | 'not-authorized' | 'not-well-formed' | 'policy-violation'
  | 'remote-connection-failed' | 'reset' | 'resource-constraint' | 'restricted-xml' | 'see-other-host'
  | 'system-shutdown' | 'undefined-condition' | 'unsupported-encoding' | 'unsupported-feature'
  | 'unsupported-stanza-type' | 'unsupported-version';

/** A fatal stream-level error: the stream gets `<stream:error>` and is closed. */
export class StreamError extends Error {
  readonly condition: StreamErrorCondition;
  readonly text: string | undefined;
  constructor(condition: StreamErrorCondition, text?: string) {
    super(text ? `${condition}: ${text}` : condition);
    this.name = 'StreamError';
    this.condition = condition;
    this.text = text;
  }

  toElement(): Element {
    const el = xml('stream:error', {}, xml(this.condition, { xmlns: NS_STREAMS }));
    if (this.text) el.append(xml('text', { xmlns: NS_STREAMS }, this.text));
    return el;
  }
}

/** RFC 6120 §8.3.3 stanza error conditions with their default types (§8.3.2). */
export const STANZA_ERROR_TYPES = {
  'bad-request': 'modify',
  'conflict': 'cancel',
  'feature-not-implemented': 'cancel',
  'forbidden': 'auth',
  'gone': 'cancel',
  'internal-server-error': 'cancel',
  'item-not-found': 'cancel',
  'jid-malformed': 'modify',
  'not-acceptable': 'modify',
  'not-allowed': 'cancel',
  'not-authorized': 'auth',
  'policy-violation': 'modify',
  'recipient-unavailable': 'wait',
  'redirect': 'modify',
  'registration-required': 'auth',
  'remote-server-not-found': 'cancel',
  'remote-server-timeout': 'wait',
  'resource-constraint': 'wait',
  'service-unavailable': 'cancel',
  'subscription-required': 'auth',
  'undefined-condition': 'cancel',
  'unexpected-request': 'wait',
} as const;

export type StanzaErrorCondition = keyof typeof STANZA_ERROR_TYPES;
export type StanzaErrorType = 'auth' | 'cancel' | 'continue' | 'modify' | 'wait';

/** An error answered to one stanza; the stream goes on. */
export class StanzaError extends Error {
  readonly condition: StanzaErrorCondition;
  readonly type: StanzaErrorType;
  readonly text: string | undefined;
  /** Application-specific condition elements (e.g. XEP-0363 file-too-large). */
  readonly extra: Element[];
  constructor(
    condition: StanzaErrorCondition,
    text?: string,
    options: { type?: StanzaErrorType; extra?: Element[] } = {},
  ) {
    super(text ? `${condition}: ${text}` : condition);
    this.name = 'StanzaError';
    this.condition = condition;
    this.type = options.type ?? STANZA_ERROR_TYPES[condition];
    this.text = text;
    this.extra = options.extra ?? [];
  }

  /** The `<error/>` child; `by` names the entity that generated it. */
  toElement(by?: string): Element {
    const el = xml('error', by ? { type: this.type, by } : { type: this.type },
      xml(this.condition, { xmlns: NS_STANZAS }));
    if (this.text) el.append(xml('text', { xmlns: NS_STANZAS, 'xml:lang': 'en' }, this.text));
    for (const e of this.extra) el.append(e);
    return el;
  }
}

/** Boot-time errors: stable code, one-line message, non-zero exit. */
export type BootErrorCode =
  | 'CONFIG_NOT_FOUND' | 'CONFIG_SYNTAX' | 'CONFIG_INVALID'
  | 'PLUGIN_UNKNOWN' | 'PLUGIN_MISSING_DEPENDENCY' | 'PLUGIN_CYCLE' | 'PLUGIN_DUPLICATE'
  | 'PLUGIN_SETUP' | 'CERT_INVALID' | 'LISTEN_FAILED' | 'STORAGE_FAILED';

export class BootError extends Error {
  readonly code: BootErrorCode;
  constructor(code: BootErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BootError';
    this.code = code;
  }
}
