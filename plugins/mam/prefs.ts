// XEP-0441 archiving preferences (<prefs/> in the mam namespaces): a default (always, never, or
// roster: only contacts in the roster) and lists of JIDs always or never archived.
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import { Jid } from '../../lib/jid.js';
import { childrenWithNs } from './xml.js';

export type DefaultPolicy = 'always' | 'never' | 'roster';
const POLICIES: readonly string[] = ['always', 'never', 'roster'];

/** As stored (keyval 'mam_prefs', owner = the user's bare JID). */
export interface Prefs {
  default: DefaultPolicy;
  always: string[];
  never: string[];
  [key: string]: string | string[];
}

export function prefsElement(ns: string, p: Prefs): Element {
  const list = (name: string, jids: readonly string[]) => xml(name, {}, ...jids.map((j) => xml('jid', {}, j)));
  // XEP-0441: <always/> and <never/> are present even when empty.
  return xml('prefs', { xmlns: ns, default: p.default }, list('always', p.always), list('never', p.never));
}

/**
 * Reads a <prefs/> set. JIDs are normalised and kept once; a JID in both lists stays only in
 * <never/>: not archiving is the safe reading of a contradiction (the reply shows what applies,
 * which XEP-0441 allows to differ from the request).
 */
export function parsePrefs(payload: Element, maxJids: number): Prefs {
  const def = payload.attrs.default;
  if (def === undefined || !POLICIES.includes(def)) {
    throw new StanzaError('bad-request', 'default must be always, never or roster');
  }
  const read = (name: string): string[] => {
    const out = new Set<string>();
    const ns = payload.attrs.xmlns;
    for (const { el: list, ns: listNs } of childrenWithNs(payload, ns)) {
      if (list.name !== name || listNs !== ns) continue;
      for (const { el } of childrenWithNs(list, ns)) {
        if (el.name !== 'jid') continue;
        const jid = Jid.tryParse(el.getText().trim());
        if (!jid) throw new StanzaError('jid-malformed', `${el.getText()} is not a valid JID`);
        out.add(jid.full);
      }
    }
    return [...out];
  };
  const never = read('never');
  const neverSet = new Set(never);
  const always = read('always').filter((j) => !neverSet.has(j));
  if (always.length + never.length > maxJids) {
    throw new StanzaError('policy-violation', `at most ${maxJids} JIDs in always and never together`);
  }
  return { default: def as DefaultPolicy, always, never };
}

/**
 * XEP-0441 JID matching: a listed bare JID matches the target with any resource; a listed full JID only
 * that resource. Never wins over always.
 */
export function listed(p: Prefs, target: Jid): 'always' | 'never' | undefined {
  const hit = (list: readonly string[]) => list.includes(target.full) || (target.resource !== '' && list.includes(target.bare));
  if (hit(p.never)) return 'never';
  if (hit(p.always)) return 'always';
  return undefined;
}
