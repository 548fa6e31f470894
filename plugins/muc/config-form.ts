// The room configuration form (XEP-0045 §10.2, FORM_TYPE muc#roomconfig, field names from the
// XMPP Registrar). Parsing checks every submitted value before anything is changed, so a form
// with one bad field changes nothing (§10.2: not-acceptable).
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import { Jid } from '../../lib/jid.js';
import { isElement, NS_DATA, NS_MUC_ROOMCONFIG } from './ns.js';
import { ALLOW_PM_VALUES, type AllowPm, type MucOptions } from './options.js';
import type { RoomConfig } from './types.js';

type FieldType = 'boolean' | 'text-single' | 'text-private' | 'list-single' | 'jid-single' | 'jid-multi' | 'hidden';

export function field(v: string, type: FieldType, label: string, values: string[], options?: Array<[string, string]>): Element {
  const f = xml('field', { var: v, type, label });
  for (const [value, l] of options ?? []) f.append(xml('option', { label: l }, xml('value', {}, value)));
  for (const value of values) f.append(xml('value', {}, value));
  return f;
}

const bool = (b: boolean): string => (b ? '1' : '0');

export interface ConfigLists {
  owners: string[];
  admins: string[];
}

export function configForm(c: RoomConfig, lists: ConfigLists, o: MucOptions): Element {
  const maxUsers = [...new Set([5, 10, 20, 30, 50, 100, 200, 500, 1000, c.maxUsers].filter((n) => n <= o.max_users_limit))]
    .sort((a, b) => a - b);
  return xml('x', { xmlns: NS_DATA, type: 'form' },
    xml('title', {}, 'Room configuration'),
    field('FORM_TYPE', 'hidden', '', [NS_MUC_ROOMCONFIG]),
    field('muc#roomconfig_roomname', 'text-single', 'Name', [c.name]),
    field('muc#roomconfig_roomdesc', 'text-single', 'Description', [c.description]),
    field('muc#roomconfig_persistentroom', 'boolean', 'Keep the room when the last occupant leaves', [bool(c.persistent)]),
    field('muc#roomconfig_publicroom', 'boolean', 'List the room in the directory', [bool(c.public)]),
    field('muc#roomconfig_membersonly', 'boolean', 'Only members may enter', [bool(c.membersOnly)]),
    field('muc#roomconfig_moderatedroom', 'boolean', 'Only occupants with voice may speak', [bool(c.moderated)]),
    field('muc#roomconfig_passwordprotectedroom', 'boolean', 'A password is required to enter', [bool(c.passwordProtected)]),
    field('muc#roomconfig_roomsecret', 'text-private', 'Password', [c.password]),
    field('muc#roomconfig_maxusers', 'list-single', 'Maximum number of occupants', [String(c.maxUsers)],
      maxUsers.map((n) => [String(n), String(n)])),
    field('muc#roomconfig_whois', 'list-single', 'Who may see real JIDs', [c.whois],
      [['moderators', 'Moderators only'], ['anyone', 'Anyone']]),
    field('muc#roomconfig_allowinvites', 'boolean', 'Occupants may invite others', [bool(c.allowInvites)]),
    field('muc#roomconfig_allowpm', 'list-single', 'Who may send private messages', [c.allowPm],
      [['anyone', 'Anyone'], ['participants', 'Participants'], ['moderators', 'Moderators'], ['none', 'Nobody']]),
    field('muc#roomconfig_changesubject', 'boolean', 'Occupants may change the subject', [bool(c.changeSubject)]),
    field('muc#roomconfig_historylength', 'text-single', `Messages sent as history (at most ${o.max_history})`, [String(c.historyLength)]),
    field('muc#roomconfig_enablearchiving', 'boolean', 'Archive messages (message archive management)', [bool(c.archiving)]),
    field('muc#roomconfig_roomowners', 'jid-multi', 'Room owners', lists.owners),
    field('muc#roomconfig_roomadmins', 'jid-multi', 'Room admins', lists.admins),
  );
}

export interface ConfigSubmission {
  config: RoomConfig;
  /** Present when the form replaced the owner or admin list. */
  owners?: string[];
  admins?: string[];
}

function bad(v: string, why: string): never {
  throw new StanzaError('not-acceptable', `${v}: ${why}`);
}

export function parseBool(v: string, value: string | undefined): boolean {
  if (value === '1' || value === 'true') return true;
  if (value === '0' || value === 'false') return false;
  return bad(v, 'expected a boolean');
}

function parseJids(v: string, values: string[]): string[] {
  const out = new Set<string>();
  for (const value of values) {
    const jid = Jid.tryParse(value.trim());
    if (!jid || jid.local === '' || jid.resource !== '') bad(v, `${value} is not a bare JID`);
    out.add(jid.bare);
  }
  return [...out];
}

/** Reads a submitted form onto a copy of the current configuration. */
/** The values of a submitted data form, by field var. */
export function formValues(form: Element): Map<string, string[]> {
  const values = new Map<string, string[]>();
  for (const f of form.children.filter(isElement)) {
    if (f.name !== 'field' || !f.attrs.var) continue;
    values.set(f.attrs.var, f.getChildren('value').map((v) => v.getText()));
  }
  return values;
}

export function parseConfigForm(form: Element, current: RoomConfig, o: MucOptions): ConfigSubmission {
  const values = formValues(form);
  const formType = values.get('FORM_TYPE')?.[0];
  if (formType !== undefined && formType !== NS_MUC_ROOMCONFIG) throw new StanzaError('bad-request', 'unexpected FORM_TYPE');
  const c: RoomConfig = { ...current };
  const out: ConfigSubmission = { config: c };
  const one = (v: string): string | undefined => values.get(v)?.[0];
  for (const [v, vals] of values) {
    const value = vals[0];
    switch (v) {
      case 'muc#roomconfig_roomname': c.name = value ?? ''; break;
      case 'muc#roomconfig_roomdesc': c.description = value ?? ''; break;
      case 'muc#roomconfig_persistentroom': c.persistent = parseBool(v, value); break;
      case 'muc#roomconfig_publicroom': c.public = parseBool(v, value); break;
      case 'muc#roomconfig_membersonly': c.membersOnly = parseBool(v, value); break;
      case 'muc#roomconfig_moderatedroom': c.moderated = parseBool(v, value); break;
      case 'muc#roomconfig_passwordprotectedroom': c.passwordProtected = parseBool(v, value); break;
      case 'muc#roomconfig_roomsecret': c.password = value ?? ''; break;
      case 'muc#roomconfig_allowinvites': c.allowInvites = parseBool(v, value); break;
      case 'muc#roomconfig_changesubject': c.changeSubject = parseBool(v, value); break;
      case 'muc#roomconfig_enablearchiving': c.archiving = parseBool(v, value); break;
      case 'muc#roomconfig_whois':
        if (value !== 'moderators' && value !== 'anyone') bad(v, 'expected moderators or anyone');
        c.whois = value;
        break;
      case 'muc#roomconfig_allowpm':
        if (!(ALLOW_PM_VALUES as readonly string[]).includes(value ?? '')) bad(v, `expected one of ${ALLOW_PM_VALUES.join(', ')}`);
        c.allowPm = value as AllowPm;
        break;
      case 'muc#roomconfig_maxusers': {
        const n = Number(value);
        if (!/^\d+$/.test(value ?? '') || n < 1 || n > o.max_users_limit) bad(v, `expected a number from 1 to ${o.max_users_limit}`);
        c.maxUsers = n;
        break;
      }
      case 'muc#roomconfig_historylength': {
        const n = Number(value);
        if (!/^\d+$/.test(value ?? '') || n > o.max_history) bad(v, `expected a number from 0 to ${o.max_history}`);
        c.historyLength = n;
        break;
      }
      case 'muc#roomconfig_roomowners': out.owners = parseJids(v, vals); break;
      case 'muc#roomconfig_roomadmins': out.admins = parseJids(v, vals); break;
      default: break; // Unknown fields are ignored (XEP-0004 §3.4: a form processor may).
    }
  }
  // Clients that only know the secret field (Prosody has no other) protect a room by setting it.
  if (!values.has('muc#roomconfig_passwordprotectedroom') && one('muc#roomconfig_roomsecret') !== undefined) {
    c.passwordProtected = c.password !== '';
  }
  if (c.passwordProtected && c.password === '') bad('muc#roomconfig_roomsecret', 'a password-protected room needs a password');
  if (!c.passwordProtected) c.password = '';
  if (out.owners !== undefined && out.owners.length === 0) bad('muc#roomconfig_roomowners', 'a room needs an owner');
  return out;
}
