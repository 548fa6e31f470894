// Stanza serialisation. ltx's toString() leaves tab, newline and carriage return unescaped in
// attribute values (and CR in text); a parser then normalises them to spaces, which mangles
// stanzas that carried them as character references. This writer escapes them.
import type { Element } from 'ltx';

const ATTR_SPECIAL = /[&<>"'\t\n\r]/;
const ATTR_ALL = /[&<>"'\t\n\r]/g;
const TEXT_SPECIAL = /[&<>\r]/;
const TEXT_ALL = /[&<>\r]/g;

const ENTITIES: Record<string, string> = {
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;', '\t': '&#9;', '\n': '&#10;', '\r': '&#13;',
};
const replace = (c: string): string => ENTITIES[c]!;

export function escapeAttr(s: string): string {
  return ATTR_SPECIAL.test(s) ? s.replace(ATTR_ALL, replace) : s;
}

export function escapeText(s: string): string {
  return TEXT_SPECIAL.test(s) ? s.replace(TEXT_ALL, replace) : s;
}

export function serialize(el: Element): string {
  let out = '<' + el.name;
  const attrs = el.attrs as Record<string, unknown>;
  for (const key in attrs) {
    const v = attrs[key];
    if (v === undefined || v === null) continue;
    out += ' ' + key + '="' + escapeAttr(String(v)) + '"';
  }
  const children = el.children;
  if (children.length === 0) return out + '/>';
  out += '>';
  for (const c of children) {
    out += typeof c === 'string' ? escapeText(c) : serialize(c as Element);
  }
  return out + '</' + el.name + '>';
}
