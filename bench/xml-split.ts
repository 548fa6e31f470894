// Splits an XMPP stream into its top-level elements as strings, without building a tree.
//
// Why not the server's StreamParser: the load generator shares two cores with the server it
// measures, so every microsecond it spends per stanza is taken from the server. The bench only
// reads what Parley (or the echo server) writes, and Parley serialises every stanza itself, so a
// scanner that tracks tag depth and skips quoted attribute values is enough. It does not check
// well-formedness and must never be pointed at untrusted input.

export interface SplitHandler {
  /** The opening tag of the stream root (`<stream:stream ...>`). */
  streamStart(tag: string): void;
  /** One complete child of the root, exactly as received. */
  element(xml: string): void;
  streamEnd(): void;
}

// Finds the end of a tag while stepping over quoted attribute values, where '>' may appear.
const TAG_SCAN = /["'>]/g;

export class XmlSplitter {
  private buf = '';
  private pos = 0;
  private depth = 0;
  private elementStart = -1;
  // Bumped by reset(): a handler may restart the stream (after SASL success) in the middle of
  // write(), and what follows in the old buffer then belongs to no stream.
  private generation = 0;

  constructor(private readonly handler: SplitHandler) {}

  reset(): void {
    this.buf = '';
    this.pos = 0;
    this.depth = 0;
    this.elementStart = -1;
    this.generation++;
  }

  write(chunk: string): void {
    const gen = this.generation;
    // After the trim at the end of the previous call, buf holds only an unfinished tag or
    // element (usually nothing), so this concatenation stays short.
    this.buf += chunk;
    for (;;) {
      const lt = this.buf.indexOf('<', this.pos);
      if (lt < 0) {
        this.pos = this.buf.length;
        break;
      }
      const end = this.tagEnd(lt);
      if (end < 0) {
        // Incomplete tag: wait for more bytes, scanning again from its '<'.
        this.pos = lt;
        break;
      }
      this.pos = end + 1;
      const second = this.buf.charCodeAt(lt + 1);
      if (second === 63 /* ? */ || second === 33 /* ! */) continue;
      if (second === 47 /* / */) {
        this.depth--;
        if (this.depth === 1 && this.elementStart >= 0) {
          const xml = this.buf.slice(this.elementStart, end + 1);
          this.elementStart = -1;
          this.handler.element(xml);
        } else if (this.depth === 0) {
          this.handler.streamEnd();
        }
      } else if (this.buf.charCodeAt(end - 1) === 47 /* / */) {
        if (this.depth === 1) this.handler.element(this.buf.slice(lt, end + 1));
      } else {
        if (this.depth === 0) this.handler.streamStart(this.buf.slice(lt, end + 1));
        else if (this.depth === 1) this.elementStart = lt;
        this.depth++;
      }
      if (gen !== this.generation) return;
    }
    // Keep only what is still needed: the element being collected, or the unscanned tail.
    const keep = this.elementStart >= 0 ? this.elementStart : this.pos;
    if (keep > 0) {
      this.buf = this.buf.slice(keep);
      this.pos -= keep;
      if (this.elementStart >= 0) this.elementStart -= keep;
    }
  }

  /**
   * Index of the '>' closing the tag that starts at `lt`, or -1 when it has not all arrived.
   * The XML declaration ends in '?>' and is found the same way. Comments and CDATA are not
   * handled: Parley's serialiser never writes them.
   */
  private tagEnd(lt: number): number {
    const buf = this.buf;
    let j = lt + 1;
    for (;;) {
      TAG_SCAN.lastIndex = j;
      const m = TAG_SCAN.exec(buf);
      if (!m) return -1;
      if (m[0] === '>') return m.index;
      const close = buf.indexOf(m[0], m.index + 1);
      if (close < 0) return -1;
      j = close + 1;
    }
  }
}

// ---------- reading the strings the splitter hands out ----------

const ATTR_CACHE = new Map<string, RegExp>();

/** The element's name, e.g. 'iq' or 'stream:features'. */
export function elementName(xml: string): string {
  let i = 1;
  while (i < xml.length) {
    const c = xml.charCodeAt(i);
    if (c === 32 || c === 62 /* > */ || c === 47 /* / */ || c === 9 || c === 10 || c === 13) break;
    i++;
  }
  return xml.slice(1, i);
}

/** An attribute of the outermost tag only (the first tag of the string). */
export function attr(xml: string, name: string): string | undefined {
  let re = ATTR_CACHE.get(name);
  if (!re) {
    re = new RegExp(`^<[^\\s>/]+(?:\\s+[^\\s=>]+\\s*=\\s*(?:"[^"]*"|'[^']*'))*?\\s+${name.replace(/[.:-]/g, '\\$&')}\\s*=\\s*(?:"([^"]*)"|'([^']*)')`);
    ATTR_CACHE.set(name, re);
  }
  const m = re.exec(xml);
  if (!m) return undefined;
  return unescapeXml(m[1] ?? m[2] ?? '');
}

/** Text of the first `<name>…</name>` child anywhere inside (the server writes these without attributes or with simple ones). */
export function childText(xml: string, name: string): string | undefined {
  let open = xml.indexOf(`<${name}>`);
  let start: number;
  if (open >= 0) {
    start = open + name.length + 2;
  } else {
    open = xml.indexOf(`<${name} `);
    if (open < 0) return undefined;
    const gt = xml.indexOf('>', open);
    if (gt < 0 || xml.charCodeAt(gt - 1) === 47) return gt < 0 ? undefined : '';
    start = gt + 1;
  }
  const end = xml.indexOf(`</${name}>`, start);
  if (end < 0) return undefined;
  return unescapeXml(xml.slice(start, end));
}

/** Text content of an element with only text inside (SASL challenges and successes). */
export function ownText(xml: string): string {
  const gt = xml.indexOf('>');
  if (xml.charCodeAt(gt - 1) === 47) return '';
  const end = xml.lastIndexOf('</');
  return unescapeXml(xml.slice(gt + 1, end));
}

const ENTITY = /&(lt|gt|amp|quot|apos|#x[0-9a-fA-F]+|#[0-9]+);/g;
const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

export function unescapeXml(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(ENTITY, (_, e: string) => {
    if (e[0] !== '#') return NAMED[e]!;
    return String.fromCodePoint(e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
  });
}

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&${({ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": 'apos' } as Record<string, string>)[c]};`);
}
