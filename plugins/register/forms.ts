// XEP-0077 payloads: the registration form (XEP-0004 data form with FORM_TYPE jabber:iq:register,
// XEP-0068) and reading what a client submitted, as a form or as the legacy fields.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError, type StanzaErrorCondition, type StanzaErrorType } from '../../lib/errors.js';
import { NS_DATA_FORMS } from '../../lib/xml/ns.js';

export const NS_REGISTER = 'jabber:iq:register';
export const NS_REGISTER_FEATURE = 'http://jabber.org/features/iq-register';
const FORM_TYPES = new Set([NS_REGISTER, `${NS_REGISTER}:changepassword`, `${NS_REGISTER}:cancel`]);

/** XEP-0086 codes: XEP-0077 §9 requires old-style error codes alongside the conditions. */
const LEGACY_CODES: Partial<Record<StanzaErrorCondition, string>> = {
  'bad-request': '400',
  'conflict': '409',
  'forbidden': '403',
  'internal-server-error': '500',
  'not-acceptable': '406',
  'not-allowed': '405',
  'not-authorized': '401',
  'registration-required': '407',
  'resource-constraint': '500',
  'service-unavailable': '503',
  'unexpected-request': '400',
};

/** A StanzaError whose `<error/>` also carries the legacy code. */
export class RegisterError extends StanzaError {
  constructor(condition: StanzaErrorCondition, text?: string, options: { type?: StanzaErrorType; extra?: Element[] } = {}) {
    super(condition, text, options);
  }

  static from(err: StanzaError): RegisterError {
    return err instanceof RegisterError ? err : new RegisterError(err.condition, err.text, { type: err.type, extra: err.extra });
  }

  override toElement(by?: string): Element {
    const el = super.toElement(by);
    const code = LEGACY_CODES[this.condition];
    if (code !== undefined) el.attrs.code = code;
    return el;
  }
}

export interface Submission {
  username: string | undefined;
  password: string | undefined;
  pin: string | undefined;
  /** The form's FORM_TYPE, when a form was sent. */
  formType: string | undefined;
}

function field(varName: string, type: string, label: string, o: { value?: string | undefined; desc?: string; required?: boolean } = {}): Element {
  const f = xml('field', { var: varName, type, label });
  if (o.desc) f.append(xml('desc', {}, o.desc));
  if (o.required !== false) f.append(xml('required'));
  if (o.value !== undefined && o.value !== '') f.append(xml('value', {}, o.value));
  return f;
}

export interface FormState {
  username?: string | undefined;
  password?: string | undefined;
  /** Ask for the PIN (it was sent). */
  withPin: boolean;
}

/**
 * The registration query: instructions and the form. No legacy fields: the PIN has no
 * jabber:iq:register field, so XEP-0077 §6 asks for form plus instructions only.
 */
export function registrationQuery(instructions: string, state: FormState, host: string): Element {
  const form = xml('x', { xmlns: NS_DATA_FORMS, type: 'form' },
    xml('title', {}, `Register a phone number on ${host}`),
    xml('instructions', {}, instructions),
    xml('field', { var: 'FORM_TYPE', type: 'hidden' }, xml('value', {}, NS_REGISTER)),
    field('username', 'text-single', 'Phone number', {
      value: state.username,
      desc: 'In international form with country code, e.g. +4915112345678',
    }),
    // The password a client just sent on this TLS stream is sent back to that stream only,
    // so that clients which re-render the form (Gajim) or resubmit it (Dino) keep it.
    field('password', 'text-private', 'Password', { value: state.password }));
  if (state.withPin) {
    form.append(field('pin', 'text-single', 'PIN', { desc: 'The 6-digit code sent to this number by SMS' }));
  }
  return xml('query', { xmlns: NS_REGISTER }, xml('instructions', {}, instructions), form);
}

/** Reads a submission: the data form when there is one (XEP-0077 §6 precedence), else the legacy fields. */
export function readSubmission(query: Element): Submission {
  const form = query.getChildren('x', NS_DATA_FORMS)[0];
  if (form) {
    const type = form.attrs.type;
    if (type !== 'submit') throw new RegisterError('bad-request', "a registration form is submitted with type='submit'");
    const values = new Map<string, string>();
    for (const f of form.getChildren('field')) {
      const name = f.attrs.var;
      if (typeof name !== 'string') continue;
      if (values.has(name)) throw new RegisterError('bad-request', `field ${name} appears twice`);
      const vals = f.getChildren('value');
      if (vals.length > 1) throw new RegisterError('bad-request', `field ${name} has more than one value`);
      values.set(name, vals[0]?.getText() ?? '');
    }
    const formType = values.get('FORM_TYPE');
    if (formType !== undefined && !FORM_TYPES.has(formType)) {
      throw new RegisterError('bad-request', `unknown FORM_TYPE ${formType}`);
    }
    return { username: values.get('username'), password: values.get('password'), pin: values.get('pin'), formType };
  }
  const text = (name: string): string | undefined => {
    const el = query.getChild(name);
    return el === undefined ? undefined : el.getText();
  };
  return { username: text('username'), password: text('password'), pin: undefined, formType: undefined };
}
