// XEP-0377 reports attached to a block command's items. Both wire forms clients send are read:
// `urn:xmpp:reporting:1` with a `reason` URI (current XEP, Conversations 2.10+, slixmpp) and the
// older `urn:xmpp:reporting:0` with a <spam/> or <abuse/> child (earlier Conversations). Both are
// recorded with the `urn:xmpp:reporting:*` reason URIs so admins see one vocabulary.
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';
import type { Json } from '../../lib/storage/types.js';

export const NS_REPORTING = 'urn:xmpp:reporting:1';
export const NS_REPORTING_0 = 'urn:xmpp:reporting:0';
/** Features of the earlier revision, which clients such as Conversations still look for. */
export const NS_REASON_SPAM_0 = 'urn:xmpp:reporting:reason:spam:0';
export const NS_REASON_ABUSE_0 = 'urn:xmpp:reporting:reason:abuse:0';
export const REASON_SPAM = 'urn:xmpp:reporting:spam';
export const REASON_ABUSE = 'urn:xmpp:reporting:abuse';
const NS_SID = 'urn:xmpp:sid:0';

/** A report as stored for admins (one archive item per reported JID). */
export interface Report {
  /** The reporting user's bare JID. */
  reporter: string;
  /** The reported (and blocked) JID. */
  jid: string;
  reason: string;
  text?: string;
  lang?: string;
  /** XEP-0359 stanza ids of the reported messages, as the reporter's archive knows them. */
  stanza_ids: Array<{ id: string; by: string }>;
  /** Processing the reporter agreed to (XEP-0377 §5: report-origin, third-party). */
  processing: string[];
}

/** The report as a storable JSON value (optional fields left out when absent). */
export function reportValue(r: Report): Json {
  const v: { [key: string]: Json } = {
    reporter: r.reporter, jid: r.jid, reason: r.reason, stanza_ids: r.stanza_ids, processing: r.processing,
  };
  if (r.text !== undefined) v.text = r.text;
  if (r.lang !== undefined) v.lang = r.lang;
  return v;
}

function elements(el: Element): Element[] {
  return el.children.filter((c): c is Element => typeof c !== 'string');
}

/** The element's namespace; the stream parser writes xmlns only where it changes. */
function nsOf(el: Element, parentNs: string): string {
  return el.attrs.xmlns ?? parentNs;
}

/**
 * Reads the report inside one <item/> (or <block/>), if any. A report that cannot be understood is refused
 * (bad-request) rather than recorded half: the block command then changes nothing either.
 */
export function parseReport(parent: Element, parentNs: string, reporter: string, jid: string): Report | undefined {
  const report = elements(parent).find((c) => c.name === 'report'
    && (nsOf(c, parentNs) === NS_REPORTING || nsOf(c, parentNs) === NS_REPORTING_0));
  if (!report) return undefined;
  const ns = nsOf(report, parentNs);
  const kids = elements(report).map((el) => ({ el, ns: nsOf(el, ns) }));
  let reason = report.attrs.reason;
  if (ns === NS_REPORTING_0 && !reason) {
    if (kids.some((k) => k.el.name === 'spam' && k.ns === ns)) reason = REASON_SPAM;
    else if (kids.some((k) => k.el.name === 'abuse' && k.ns === ns)) reason = REASON_ABUSE;
  }
  // XEP-0377 §4: "Abuse reports MUST include a reason". Unknown reason URIs are kept as given:
  // the registry of reasons is open.
  if (!reason) throw new StanzaError('bad-request', `the report on ${jid} has no reason`);
  const out: Report = { reporter, jid, reason, stanza_ids: [], processing: [] };
  const text = kids.find((k) => k.el.name === 'text' && k.ns === ns)?.el;
  if (text) {
    const t = text.getText().trim();
    if (t !== '') out.text = t;
    if (text.attrs['xml:lang']) out.lang = text.attrs['xml:lang'];
  }
  for (const k of kids) {
    if (k.el.name === 'stanza-id' && k.ns === NS_SID) {
      const { id, by } = k.el.attrs;
      if (!id || !by) throw new StanzaError('bad-request', 'a reported stanza-id needs both id and by');
      out.stanza_ids.push({ id, by });
    } else if ((k.el.name === 'report-origin' || k.el.name === 'third-party') && k.ns === ns) {
      out.processing.push(k.el.name);
    }
  }
  return out;
}
