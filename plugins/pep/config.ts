// Node configuration (XEP-0060 §8.2, §16.4.4): the model stored with each node, the data forms
// that show it, and the parsing of submitted forms — both the owner's configure form and the
// preconditions of publish-options (XEP-0060 §7.1.5, XEP-0223).
//
// Parsing rules. A value that is not one the field allows is refused with not-acceptable
// (XEP-0060 §8.2.5.3), naming the field. Fields this service does not know are ignored, as a
// form-processing entity may (XEP-0004 §3.2); Prosody does the same. Booleans take 1/0/true/false
// (XML Schema); pubsub#max_items takes a positive integer or `max` (the `config-node-max`
// feature), which follows the server's limit.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import { NS_DATA, NS_NODE_CONFIG, NS_PUBLISH_OPTIONS } from './ns.js';

export type AccessModel = 'open' | 'presence' | 'roster' | 'whitelist';
export type SendLast = 'never' | 'on_sub' | 'on_sub_and_presence';

export interface NodeConfig {
  title: string;
  description: string;
  type: string;
  access_model: AccessModel;
  roster_groups_allowed: string[];
  /** A count, or 'max': as many as the server keeps. */
  max_items: number | 'max';
  persist_items: boolean;
  deliver_notifications: boolean;
  deliver_payloads: boolean;
  notify_config: boolean;
  notify_delete: boolean;
  notify_retract: boolean;
  send_last_published_item: SendLast;
  notification_type: 'headline' | 'normal';
  /** PEP has one publisher per node (XEP-0163 §3): the account owner. */
  publish_model: 'publishers';
}

export const ACCESS_MODELS: readonly AccessModel[] = ['open', 'presence', 'roster', 'whitelist'];
const SEND_LAST: readonly SendLast[] = ['never', 'on_sub', 'on_sub_and_presence'];

/** XEP-0163 §6 defaults; access model and max_items come from the plugin's options. */
export function defaultConfig(accessModel: AccessModel, maxItems: number | 'max'): NodeConfig {
  return {
    title: '',
    description: '',
    type: '',
    access_model: accessModel,
    roster_groups_allowed: [],
    max_items: maxItems,
    persist_items: true,
    deliver_notifications: true,
    deliver_payloads: true,
    notify_config: false,
    notify_delete: true,
    notify_retract: true,
    send_last_published_item: 'on_sub_and_presence',
    notification_type: 'headline',
    publish_model: 'publishers',
  };
}

type Key = keyof NodeConfig;
type Kind = 'text' | 'bool' | 'max' | 'single' | 'multi';

interface FieldSpec {
  key: Key;
  kind: Kind;
  label: string;
  choices?: readonly string[];
}

const FIELDS: Readonly<Record<string, FieldSpec>> = {
  'pubsub#title': { key: 'title', kind: 'text', label: 'A friendly name for the node' },
  'pubsub#description': { key: 'description', kind: 'text', label: 'A description of the node' },
  'pubsub#type': { key: 'type', kind: 'text', label: 'The type of node data, usually specified by the namespace of the payload' },
  'pubsub#deliver_notifications': { key: 'deliver_notifications', kind: 'bool', label: 'Deliver event notifications' },
  'pubsub#deliver_payloads': { key: 'deliver_payloads', kind: 'bool', label: 'Deliver payloads with event notifications' },
  'pubsub#notify_config': { key: 'notify_config', kind: 'bool', label: 'Notify subscribers when the node configuration changes' },
  'pubsub#notify_delete': { key: 'notify_delete', kind: 'bool', label: 'Notify subscribers when the node is deleted' },
  'pubsub#notify_retract': { key: 'notify_retract', kind: 'bool', label: 'Notify subscribers when items are removed from the node' },
  'pubsub#persist_items': { key: 'persist_items', kind: 'bool', label: 'Persist items to storage' },
  'pubsub#max_items': { key: 'max_items', kind: 'max', label: 'Max # of items to persist (or max)' },
  'pubsub#access_model': { key: 'access_model', kind: 'single', label: 'Specify the subscriber model', choices: ACCESS_MODELS },
  'pubsub#roster_groups_allowed': { key: 'roster_groups_allowed', kind: 'multi', label: 'Roster groups allowed to subscribe' },
  'pubsub#publish_model': { key: 'publish_model', kind: 'single', label: 'Specify the publisher model', choices: ['publishers'] },
  'pubsub#send_last_published_item': { key: 'send_last_published_item', kind: 'single', label: 'When to send the last published item', choices: SEND_LAST },
  'pubsub#notification_type': { key: 'notification_type', kind: 'single', label: 'Specify the delivery style for notifications', choices: ['headline', 'normal'] },
};

function fieldValues(field: Element): string[] {
  return field.getChildren('value').map((v) => v.getText());
}

function parseBool(text: string): boolean | undefined {
  if (text === '1' || text === 'true') return true;
  if (text === '0' || text === 'false') return false;
  return undefined;
}

function refuse(name: string, why: string): never {
  throw new StanzaError('not-acceptable', `${name}: ${why}`);
}

/**
 * Reads the known fields of a submitted form into a partial configuration. `formType` is the
 * FORM_TYPE the form must carry when it has one; `maxItemsLimit` bounds pubsub#max_items.
 */
export function parseForm(x: Element, formType: string, maxItemsLimit: number): Partial<NodeConfig> {
  const out: Partial<Record<Key, unknown>> = {};
  for (const field of x.getChildren('field')) {
    const name = field.attrs.var;
    if (name === undefined) continue;
    const values = fieldValues(field);
    if (name === 'FORM_TYPE') {
      // XEP-0068: a form of another type is not a form this request can take.
      if (values[0] !== undefined && values[0] !== formType) throw new StanzaError('bad-request', `FORM_TYPE must be ${formType}`);
      continue;
    }
    const spec = FIELDS[name];
    if (!spec) continue;
    if (spec.kind === 'multi') {
      out[spec.key] = [...new Set(values)].sort();
      continue;
    }
    if (values.length > 1) refuse(name, 'takes one value');
    const text = (values[0] ?? '').trim();
    switch (spec.kind) {
      case 'text':
        out[spec.key] = values[0] ?? '';
        break;
      case 'bool': {
        const b = parseBool(text);
        if (b === undefined) refuse(name, `'${text}' is not a boolean`);
        out[spec.key] = b;
        break;
      }
      case 'max': {
        if (text === 'max') {
          out[spec.key] = 'max';
          break;
        }
        if (!/^\d+$/.test(text)) refuse(name, `'${text}' is neither a positive number nor max`);
        const n = Number(text);
        if (n < 1) refuse(name, 'must be at least 1');
        if (n > maxItemsLimit) refuse(name, `this server keeps at most ${maxItemsLimit} items per node`);
        out[spec.key] = n;
        break;
      }
      case 'single':
        if (!spec.choices!.includes(text)) refuse(name, `'${text}' is not one of ${spec.choices!.join(', ')}`);
        out[spec.key] = text;
        break;
    }
  }
  return out as Partial<NodeConfig>;
}

/** The data form inside a configure, publish-options or default request, if any. */
export function formOf(parent: Element | undefined): Element | undefined {
  return parent?.getChild('x', NS_DATA);
}

/** Reads publish-options (XEP-0060 §7.1.5) into preconditions. */
export function parsePublishOptions(el: Element | undefined, maxItemsLimit: number): Partial<NodeConfig> {
  const x = formOf(el);
  if (!x) return {};
  if (x.attrs.type !== undefined && x.attrs.type !== 'submit') throw new StanzaError('bad-request', 'publish-options must be a submitted form');
  return parseForm(x, NS_PUBLISH_OPTIONS, maxItemsLimit);
}

/** max_items as a number: 'max' is the server's limit. */
export function resolveMaxItems(config: NodeConfig, limit: number): number {
  return config.max_items === 'max' ? limit : Math.min(config.max_items, limit);
}

/**
 * The preconditions that the node's configuration does not meet, by field name (empty when all
 * are met). 'max' and the limit it stands for are the same number of items.
 */
export function unmetPreconditions(config: NodeConfig, wanted: Partial<NodeConfig>, maxItemsLimit: number): string[] {
  const unmet: string[] = [];
  for (const [name, spec] of Object.entries(FIELDS)) {
    const want = wanted[spec.key];
    if (want === undefined) continue;
    const have = config[spec.key];
    let same: boolean;
    if (spec.key === 'max_items') {
      const a = have === 'max' ? maxItemsLimit : have;
      const b = want === 'max' ? maxItemsLimit : want;
      same = a === b;
    } else if (Array.isArray(want)) {
      same = JSON.stringify([...(have as string[])].sort()) === JSON.stringify([...want].sort());
    } else {
      same = have === want;
    }
    if (!same) unmet.push(name);
  }
  return unmet;
}

/** Applies a partial configuration; roster_groups_allowed only matters for the roster model. */
export function applyConfig(config: NodeConfig, changes: Partial<NodeConfig>): NodeConfig {
  return { ...config, ...changes };
}

/**
 * The node_config form (XEP-0060 §16.4.4): `form` for configure and default requests, `result`
 * inside configuration notifications. `groups` are the owner's roster groups, offered as options.
 */
export function configForm(config: NodeConfig, type: 'form' | 'result', groups: readonly string[] = []): Element {
  const x = xml('x', { xmlns: NS_DATA, type });
  x.append(xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, NS_NODE_CONFIG)));
  for (const [name, spec] of Object.entries(FIELDS)) {
    const value = config[spec.key];
    const fieldType = spec.kind === 'bool' ? 'boolean' : spec.kind === 'single' ? 'list-single'
      : spec.kind === 'multi' ? 'list-multi' : 'text-single';
    const field = xml('field', type === 'form' ? { var: name, type: fieldType, label: spec.label } : { var: name });
    if (type === 'form') {
      const choices = spec.kind === 'multi' ? [...new Set([...groups, ...(value as string[])])].sort() : spec.choices ?? [];
      for (const c of choices) field.append(xml('option', {}, xml('value', {}, c)));
    }
    if (Array.isArray(value)) for (const v of value) field.append(xml('value', {}, v));
    else if (typeof value === 'boolean') field.append(xml('value', {}, value ? '1' : '0'));
    else if (value !== '') field.append(xml('value', {}, String(value)));
    x.append(field);
  }
  return x;
}

/** Whether a stored value is a usable configuration (guards against damaged records). */
export function isConfig(v: unknown): v is NodeConfig {
  return typeof v === 'object' && v !== null && typeof (v as NodeConfig).access_model === 'string'
    && ACCESS_MODELS.includes((v as NodeConfig).access_model);
}
