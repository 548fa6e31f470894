// The Quicksy contact synchronisation payload (im.quicksy.synchronization:0) and its version hash.
import { createHash } from 'node:crypto';
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StanzaError } from '../../lib/errors.js';

export const NS_SYNC = 'im.quicksy.synchronization:0';

/** Numbers that can be account names: E.164 with its '+'. */
const E164 = /^\+[1-9]\d{1,14}$/;

export interface Match {
  number: string;
  jids: string[];
}

/**
 * QuicksyServer's "statusQuo" (DESIGN §5): base64 SHA-1 over the entries sorted by number, each
 * the number followed by U+001E and each of its JIDs (sorted), entries joined by U+001D. Sorted
 * by UTF-16 code units, as Java's String.compareTo does, so both sides agree on the order.
 */
export function statusQuo(entries: readonly Match[]): string {
  const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  const text = [...entries]
    .sort((a, b) => byCodeUnit(a.number, b.number))
    .map((e) => e.number + [...e.jids].sort(byCodeUnit).map((j) => `\u001e${j}`).join(''))
    .join('\u001d');
  return createHash('sha1').update(text, 'utf8').digest('base64');
}

/**
 * The numbers of a phone book, deduplicated. An entry without a number is malformed; a number
 * that is not E.164 cannot name an account and is left out (address books hold all sorts).
 */
export function bookNumbers(book: Element): string[] {
  const numbers = new Set<string>();
  for (const entry of book.getChildren('entry')) {
    const number = entry.attrs.number;
    if (typeof number !== 'string') throw new StanzaError('bad-request', 'every entry needs a number attribute');
    if (E164.test(number)) numbers.add(number);
  }
  return [...numbers];
}

export function phoneBook(entries: readonly Match[]): Element {
  const book = xml('phone-book', { xmlns: NS_SYNC });
  for (const e of [...entries].sort((a, b) => (a.number < b.number ? -1 : 1))) {
    book.append(xml('entry', { number: e.number }, ...e.jids.map((j) => xml('jid', {}, j))));
  }
  return book;
}
