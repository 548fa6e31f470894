// Socket-free XMPP stream parser for untrusted input: bytes in, stream events out.
//
// saxes (strict, namespace-aware) is the tokenizer; stanzas are built as detached ltx Elements.
// Everything that can cost memory or CPU is bounded *before* saxes sees the bytes: the input is
// handed to saxes in pieces whose size is derived from the remaining byte budget of the
// top-level construct being parsed (a "unit": the prolog up to the end of the stream header, one
// stanza, or the closing stream tag), so an oversized unit or token is refused once saxes has seen
// maxStanzaBytes (+ one character) of it, never after buffering all of it. Whitespace between
// units (keepalives) is dropped before saxes and never accumulates anywhere.
//
// Error conditions (RFC 6120 §4.9.3, §11.1):
//   invalid UTF-8, malformed XML, mismatched tags, character data
//   (other than whitespace) at stream level, anything after </stream:stream>  -> not-well-formed
//   comments, processing instructions (also a misplaced <?xml?>), DOCTYPE,
//   undefined entity references, an XML declaration for a version other than 1.0 -> restricted-xml
//   unbound namespace prefix                                                    -> bad-namespace-prefix
//   declared encoding other than UTF-8, UTF-16/32 byte order mark               -> unsupported-encoding
//   any XmlLimits value exceeded                                                -> policy-violation
//   an exception thrown by one of the caller's handlers                         -> internal-server-error
//
// Character data at stream level: RFC 6120 only allows stanzas (and whitespace keepalives)
// between the stream tags. Such text is well-formed XML, but it is neither a stanza nor a
// keepalive and cannot be processed, and peers and other servers report it as not-well-formed,
// so we do too rather than the vaguer bad-format.
import { isUtf8 } from 'node:buffer';
import { SaxesParser, type SaxesTagNS } from 'saxes';
import { Element } from 'ltx';
import { StreamError, type StreamErrorCondition } from '../errors.js';

export interface XmlLimits {
  /** Bytes of one top-level element incl. its children (default 262144). */
  maxStanzaBytes: number;
  /** Element nesting depth inside the stream root; the stanza itself is depth 1 (default 64). */
  maxDepth: number;
  /** Attributes per element incl. namespace declarations (default 64). */
  maxAttributes: number;
  /** Longest single name, attribute value or text node (default 131072). */
  maxTokenBytes: number;
}

export const DEFAULT_XML_LIMITS: XmlLimits = Object.freeze({
  maxStanzaBytes: 262144,
  maxDepth: 64,
  maxAttributes: 64,
  maxTokenBytes: 131072,
});

export interface StreamHeader {
  /** Qualified name as written, e.g. 'stream:stream'. */
  name: string;
  /** Namespace URI of the root element (must be checked by the caller). */
  ns: string;
  /** The default namespace declared on the root (jabber:client, jabber:server, ...), '' if none. */
  contentNs: string;
  /** Other attributes: to, from, id, version, xml:lang (no xmlns declarations). */
  attrs: Record<string, string>;
}

export interface StreamParserHandlers {
  streamStart(header: StreamHeader): void;
  stanza(el: Element): void;
  streamEnd(): void;
  error(err: StreamError): void;
}

type SaxOptions = { xmlns: true; forceXMLVersion: true; defaultXMLVersion: '1.0' };
type Sax = SaxesParser<SaxOptions>;

// Unwinds saxes.write() when reset() was called from inside a handler: the old parser must not
// touch the state of the new stream.
const ABORT = Symbol('abort');
// Unwinds saxes.write() at the first event after </stream:stream>; the rest of the input is then
// checked by the simpler after-the-end rule in consume().
const END = Symbol('end');

/** Wraps an exception thrown by a caller's handler so it is not mistaken for a parse error. */
class HandlerFailure {
  constructor(readonly cause: unknown) {}
}

// Where the parser is in the stream (plain constants: enums do not survive isolated transpilers).
const Phase = { Prolog: 0, Open: 1, Ended: 2 } as const;
type Phase = (typeof Phase)[keyof typeof Phase];

// What happened to a piece handed to saxes.
const Outcome = { Ok: 0, Stop: 1, Ended: 2 } as const;
type Outcome = (typeof Outcome)[keyof typeof Outcome];

const LT = 0x3c;
const DECODE_SLICE = 1 << 20;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d;
}

function skipWs(s: string, i: number, end: number): number {
  while (i < end && isWs(s.charCodeAt(i))) i++;
  return i;
}

function utf8Length(s: string, from: number, to: number): number {
  return Buffer.byteLength(from === 0 && to === s.length ? s : s.slice(from, to), 'utf8');
}

export class StreamParser {
  readonly #h: StreamParserHandlers;
  readonly #limits: XmlLimits;

  #sax!: Sax;
  /** The start of a UTF-8 sequence that the last Buffer chunk cut in half (at most 3 bytes). */
  #carry: Buffer | null = null;
  /** Bumped by reset(); a write that sees it change stops touching the parser. */
  #gen = 0;
  #failed = false;
  #phase: Phase = Phase.Prolog;

  // Stanza under construction: the open elements below the root and their namespaces.
  #stack: Element[] = [];
  #nsStack: string[] = [];
  #contentNs = '';

  // A completed stanza (or the end of the stream) is held until saxes shows the close tag was
  // valid: saxes calls the closetag handler *before* it checks the name, and for a mismatched
  // close it fails right after. Flushed at the next saxes event or when write() returns.
  #pending: Element | null = null;
  #pendingEnd = false;

  // Byte accounting, in saxes' coordinate system: code units handed to saxes so far.
  #fed = 0;
  /** Position right after the last completed unit, if one completed during the current piece. */
  #lastEnd = -1;
  /** Position right after </stream:stream>. */
  #endPos = 0;
  /** Nothing but whitespace since the last completed unit, so whitespace can be dropped unseen. */
  #idle = false;
  #unitBytes = 0;
  /** Set when a unit ends and the raw input right after it is neither whitespace nor '<'. */
  #strayText = false;
  /** The piece saxes is working on and its position, for looking past the end of a unit. */
  #piece = '';
  #pieceBase = 0;
  /** The piece was cut to the unit's budget, so a unit ending in it may still be one byte over. */
  #cutPiece = false;
  /** Raw text fed before the root start tag was complete (bounded by maxStanzaBytes). */
  #prolog = '';
  /** A high surrogate that ended a string chunk, joined with the next chunk. */
  #pendingHigh = '';
  /** Some bytes were decoded in this stream (a UTF-16 byte order mark can only come first). */
  #sawInput = false;
  /** No character of this stream consumed yet (a UTF-8 byte order mark can only come first). */
  #atStart = true;

  constructor(handlers: StreamParserHandlers, limits?: Partial<XmlLimits>) {
    this.#h = handlers;
    this.#limits = { ...DEFAULT_XML_LIMITS, ...limits };
    this.#init();
  }

  get failed(): boolean {
    return this.#failed;
  }

  /** New stream on the same connection: forget all state, expect a new header. If called from a
   *  handler during write(), the rest of that chunk is dropped: bytes that arrived together with
   *  <starttls/> must never be read as part of the next stream (STARTTLS command injection). */
  reset(): void {
    this.#gen++;
    this.#init();
  }

  #init(): void {
    this.#sax = this.#createSax();
    this.#carry = null;
    this.#failed = false;
    this.#phase = Phase.Prolog;
    this.#stack = [];
    this.#nsStack = [];
    this.#contentNs = '';
    this.#pending = null;
    this.#pendingEnd = false;
    this.#fed = 0;
    this.#lastEnd = -1;
    this.#endPos = 0;
    // Whitespace before the stream header is treated like a keepalive (one sent across a stream
    // restart, say): dropped, so it neither reaches saxes nor stops an XML declaration.
    this.#idle = true;
    this.#unitBytes = 0;
    this.#strayText = false;
    this.#piece = '';
    this.#pieceBase = 0;
    this.#prolog = '';
    this.#pendingHigh = '';
    this.#sawInput = false;
    this.#atStart = true;
  }

  write(chunk: Buffer | string): void {
    if (this.#failed) return;
    if (typeof chunk === 'string') {
      if (this.#carry !== null) {
        // Half a UTF-8 sequence can't be completed by a string.
        this.#fail(new StreamError('not-well-formed', 'invalid UTF-8'));
        return;
      }
      let text = this.#pendingHigh + chunk;
      this.#pendingHigh = '';
      const last = text.charCodeAt(text.length - 1);
      if (last >= 0xd800 && last <= 0xdbff) {
        // The low half may come with the next string chunk.
        this.#pendingHigh = text.slice(-1);
        text = text.slice(0, -1);
      }
      if (!(text as unknown as WellFormedCheck).isWellFormed()) {
        this.#fail(new StreamError('not-well-formed', 'invalid UTF-16 (lone surrogate)'));
        return;
      }
      if (text.length > 0) this.#consume(text);
      return;
    }
    if (chunk.length <= DECODE_SLICE) {
      this.#writeBytes(chunk);
      return;
    }
    // A huge chunk is decoded a slice at a time, so a limit violation near its start is found
    // without first decoding all of it.
    const gen = this.#gen;
    for (let i = 0; i < chunk.length; i += DECODE_SLICE) {
      this.#writeBytes(chunk.subarray(i, i + DECODE_SLICE));
      if (this.#failed || gen !== this.#gen) return;
    }
  }

  #writeBytes(chunk: Buffer): void {
    let buf = chunk;
    if (this.#carry !== null) {
      buf = Buffer.concat([this.#carry, chunk]);
      this.#carry = null;
    }
    const complete = completeLength(buf);
    const body = complete === buf.length ? buf : buf.subarray(0, complete);
    if (!isUtf8(body)) {
      // Parse what came before the bad byte, so the outcome does not depend on the chunking.
      const valid = validUtf8Prefix(body);
      const bom = !this.#sawInput && valid === 0 && (body[0] === 0xfe || body[0] === 0xff);
      const gen = this.#gen;
      if (valid > 0) this.#consume(body.toString('utf8', 0, valid));
      if (this.#failed || gen !== this.#gen) return;
      // A UTF-16/32 byte order mark at the very start is an encoding we refuse, not garbage.
      this.#fail(bom ? new StreamError('unsupported-encoding', 'only UTF-8 is supported')
        : new StreamError('not-well-formed', 'invalid UTF-8'));
      return;
    }
    // Copied: the caller may reuse its buffer.
    if (complete < buf.length) this.#carry = Buffer.from(buf.subarray(complete));
    if (complete > 0) {
      this.#sawInput = true;
      this.#consume(body.toString('utf8'));
    }
  }

  #consume(s: string): void {
    const gen = this.#gen;
    const len = s.length;
    const max = this.#limits.maxStanzaBytes;
    let off = 0;
    if (this.#atStart) {
      this.#atStart = false;
      if (s.charCodeAt(0) === 0xfeff) off = 1;
    }
    while (off < len) {
      if (this.#phase === Phase.Ended) {
        if (skipWs(s, off, len) < len) {
          this.#fail(new StreamError('not-well-formed', 'data after end of stream'));
        }
        return;
      }
      if (this.#idle) {
        // Keepalive whitespace between stanzas never reaches saxes, so it is never buffered.
        off = skipWs(s, off, len);
        if (off === len) return;
        if (s.charCodeAt(off) !== LT) {
          this.#fail(strayTextError());
          return;
        }
        this.#idle = false;
        this.#unitBytes = 0;
      }
      // A unit is open here. Hand saxes at most what keeps it within budget: if the unit is
      // still open afterwards and the piece was cut short, the budget is exceeded. Any unit that
      // starts *and* ends inside the piece is smaller than the piece, so within the limit too.
      const budget = max - this.#unitBytes;
      let end = len;
      let pieceBytes = -1;
      if ((len - off) * 3 > budget) {
        // UTF-8 needs at most 3 bytes per UTF-16 code unit, so only then may the rest not fit.
        [end, pieceBytes] = prefixWithin(s, off, budget + 1);
      }
      const base = this.#fed;
      const piece = off === 0 && end === len ? s : s.slice(off, end);
      this.#lastEnd = -1;
      this.#piece = piece;
      this.#pieceBase = base;
      this.#cutPiece = pieceBytes >= 0;
      if (this.#phase === Phase.Prolog) this.#prolog += piece;
      const outcome = this.#feed(piece, gen);
      this.#piece = '';
      if (outcome === Outcome.Stop) return;
      // Also Ended when </stream:stream> was the last event of the piece and saxes returned.
      if (outcome === Outcome.Ended || this.#ended()) {
        off += this.#endPos - base;
        continue;
      }
      this.#fed += piece.length;
      if (this.#lastEnd >= 0) {
        // A unit completed in this piece: what follows it is whitespace, or the start of the
        // next unit, which is charged from its '<'.
        const next = skipWs(s, off + this.#lastEnd - base, end);
        if (next === end) {
          this.#idle = true;
        } else if (s.charCodeAt(next) !== LT) {
          this.#fail(strayTextError());
          return;
        } else {
          this.#unitBytes = utf8Length(s, next, end);
        }
      } else {
        this.#unitBytes += pieceBytes >= 0 ? pieceBytes : utf8Length(s, off, end);
        if (this.#unitBytes > max) {
          this.#fail(new StreamError('policy-violation', this.#phase === Phase.Prolog
            ? 'stream header exceeds maxStanzaBytes' : 'stanza exceeds maxStanzaBytes'));
          return;
        }
      }
      off = end;
    }
  }

  #ended(): boolean {
    return this.#phase === Phase.Ended;
  }

  /** Runs saxes over one piece and delivers what it completed. */
  #feed(piece: string, gen: number): Outcome {
    try {
      this.#sax.write(piece);
      this.#flush();
      return gen === this.#gen ? Outcome.Ok : Outcome.Stop;
    } catch (e) {
      return this.#onThrow(e, gen);
    }
  }

  #onThrow(e: unknown, gen: number): Outcome {
    if (e === ABORT) return Outcome.Stop;
    if (e === END) return Outcome.Ended;
    let err: StreamError;
    if (e instanceof HandlerFailure) {
      err = handlerError(e);
    } else {
      err = e instanceof StreamError ? e : classify(e);
      if (err.text !== undefined && err.text.endsWith(UNEXPECTED_CLOSE)) {
        // The held stanza or stream end was produced by this bogus close tag.
        this.#pending = null;
        this.#pendingEnd = false;
      }
      // Whatever saxes made of text at stream level (an entity error, say), the first fault
      // was the text itself; reporting that keeps the outcome independent of the chunking.
      if (this.#strayText) err = strayTextError();
      try {
        // Whatever completed before the error is still delivered, in order.
        this.#flush();
      } catch (e2) {
        if (e2 === ABORT) return Outcome.Stop;
        if (e2 instanceof HandlerFailure) err = handlerError(e2);
      }
      if (gen !== this.#gen) return Outcome.Stop;
    }
    this.#fail(err);
    return Outcome.Stop;
  }

  #fail(err: StreamError): void {
    this.#failed = true;
    // Drop the partial stanza now: the connection may linger while the stream error is sent.
    this.#stack = [];
    this.#nsStack = [];
    this.#pending = null;
    this.#pendingEnd = false;
    this.#h.error(err);
  }

  /** Calls a caller's handler; a reset() inside it stops the parse of the old stream. */
  #call(fn: () => void): void {
    const gen = this.#gen;
    try {
      fn();
    } catch (e) {
      throw new HandlerFailure(e);
    }
    if (gen !== this.#gen) throw ABORT;
  }

  #flush(): void {
    const el = this.#pending;
    if (el !== null) {
      this.#pending = null;
      this.#call(() => this.#h.stanza(el));
    } else if (this.#pendingEnd) {
      this.#pendingEnd = false;
      this.#call(() => this.#h.streamEnd());
    }
  }

  /** Every saxes handler starts here: the previous event was valid, so deliver it. */
  #beforeEvent(): void {
    if (this.#pending !== null || this.#pendingEnd) this.#flush();
    if (this.#phase === Phase.Ended) throw END;
    if (this.#strayText) throw strayTextError();
  }

  /** A unit (stream header, stanza, closing tag) ends at saxes position `pos`. */
  #unitEnded(pos: number): void {
    const s = this.#piece;
    const at = pos - this.#pieceBase;
    if (this.#lastEnd < 0 && this.#cutPiece) {
      // The unit open when this piece began ends inside it; the piece may hold budget + 1 bytes.
      if (this.#unitBytes + utf8Length(s, 0, at) > this.#limits.maxStanzaBytes) {
        throw new StreamError('policy-violation', this.#phase === Phase.Prolog
          ? 'stream header exceeds maxStanzaBytes' : 'stanza exceeds maxStanzaBytes');
      }
    }
    this.#lastEnd = pos;
    // Only whitespace and markup may follow at stream level. saxes shows text only decoded
    // ('&#32;' would pass as a space) and may not report it before the next unit ends, so look
    // at the raw input. Flagged rather than thrown: saxes has yet to accept the close tag.
    const i = skipWs(s, at, s.length);
    if (i < s.length && s.charCodeAt(i) !== LT) this.#strayText = true;
  }

  #createSax(): Sax {
    const sax: Sax = new SaxesParser<SaxOptions>({
      xmlns: true,
      // XMPP is XML 1.0; never let a declaration switch saxes to 1.1 character rules.
      forceXMLVersion: true,
      defaultXMLVersion: '1.0',
    });
    // Six handlers at most: saxes adds each handler as a new property, and from the seventh on
    // V8 turns the parser into a slow dictionary-mode object (measured: 4x slower). The XML
    // declaration is read from sax.xmlDecl and a DOCTYPE is found in #prolog instead.
    sax.on('opentag', (tag) => this.#onOpen(tag));
    sax.on('closetag', () => this.#onClose());
    sax.on('text', (text) => this.#onText(text));
    sax.on('cdata', (text) => {
      // Blank or not, CDATA is not a keepalive.
      if (this.#stack.length === 0) {
        this.#beforeEvent();
        throw strayTextError();
      }
      this.#onText(text);
    });
    sax.on('comment', () => {
      this.#beforeEvent();
      throw new StreamError('restricted-xml', 'comments are not allowed');
    });
    sax.on('processinginstruction', () => {
      this.#beforeEvent();
      throw new StreamError('restricted-xml', 'processing instructions are not allowed');
    });
    return sax;
  }

  #tooLong(s: string): boolean {
    const max = this.#limits.maxTokenBytes;
    // Cheap length test first; the exact byte count only for strings that could be over.
    return s.length > max || (s.length * 3 > max && Buffer.byteLength(s, 'utf8') > max);
  }

  #checkTag(tag: SaxesTagNS): void {
    if (this.#tooLong(tag.name)) throw tokenError('element name');
    let n = 0;
    const attributes = tag.attributes;
    for (const key in attributes) {
      if (++n > this.#limits.maxAttributes) {
        throw new StreamError('policy-violation', 'too many attributes (maxAttributes)');
      }
      const a = attributes[key]!;
      if (this.#tooLong(a.value)) throw tokenError('attribute value');
      if (this.#tooLong(a.name)) throw tokenError('attribute name');
    }
  }

  #onOpen(tag: SaxesTagNS): void {
    this.#beforeEvent();
    this.#checkTag(tag);
    if (this.#phase === Phase.Prolog) {
      this.#openStream(tag);
      return;
    }
    const depth = this.#stack.length + 1;
    if (depth > this.#limits.maxDepth) {
      throw new StreamError('policy-violation', 'elements nested too deeply (maxDepth)');
    }
    const parent = depth === 1 ? null : this.#stack[depth - 2]!;
    const parentNs = parent === null ? this.#contentNs : this.#nsStack[depth - 2]!;
    const uri = tag.uri;
    // Namespaces are made explicit so the stanza means the same without its stream context:
    // unprefixed names, xmlns wherever the namespace changes, and for prefixed attributes the
    // one declaration each needs, on the element that carries it.
    const attrs: Record<string, string> = {};
    if (uri !== parentNs) attrs.xmlns = uri;
    const attributes = tag.attributes;
    for (const key in attributes) {
      const a = attributes[key]!;
      const prefix = a.prefix;
      if (prefix === '') {
        if (a.name !== 'xmlns') setAttr(attrs, a.name, a.value);
      } else if (prefix !== 'xmlns') {
        attrs[a.name] = a.value;
        if (prefix !== 'xml') attrs[`xmlns:${prefix}`] = a.uri;
      }
    }
    const el = new Element(tag.local);
    el.attrs = attrs;
    if (parent !== null) {
      el.parent = parent;
      parent.children.push(el);
    }
    this.#stack.push(el);
    this.#nsStack.push(uri);
  }

  #openStream(tag: SaxesTagNS): void {
    const pos = this.#sax.position;
    // Before the root, '<!' can only have opened a comment (already refused by its handler) or
    // a DOCTYPE, which saxes accepts silently; the root start tag itself cannot contain '<'.
    if (this.#prolog.lastIndexOf('<!', pos - 1) !== -1) {
      throw new StreamError('restricted-xml', 'DTDs are not allowed');
    }
    this.#prolog = '';
    const decl = this.#sax.xmlDecl;
    if (decl.encoding !== undefined && !/^utf-?8$/i.test(decl.encoding)) {
      throw new StreamError('unsupported-encoding', 'only UTF-8 is supported');
    }
    if (decl.version !== undefined && decl.version !== '1.0') {
      throw new StreamError('restricted-xml', 'only XML 1.0 is allowed');
    }
    const attrs: Record<string, string> = {};
    const attributes = tag.attributes;
    for (const key in attributes) {
      const a = attributes[key]!;
      if (a.prefix !== 'xmlns' && a.name !== 'xmlns') setAttr(attrs, a.name, a.value);
    }
    this.#unitEnded(pos);
    this.#contentNs = tag.ns[''] ?? '';
    this.#phase = Phase.Open;
    const header: StreamHeader = { name: tag.name, ns: tag.uri, contentNs: this.#contentNs, attrs };
    this.#call(() => this.#h.streamStart(header));
  }

  #onClose(): void {
    this.#beforeEvent();
    const stack = this.#stack;
    if (stack.length === 0) {
      // The root: streamEnd() waits until saxes has accepted the name (see #pending).
      this.#unitEnded(this.#sax.position);
      this.#phase = Phase.Ended;
      this.#pendingEnd = true;
      this.#endPos = this.#sax.position;
      return;
    }
    if (stack.length === 1) this.#unitEnded(this.#sax.position);
    const el = stack.pop()!;
    this.#nsStack.pop();
    if (stack.length === 0) this.#pending = el;
  }

  #onText(text: string): void {
    this.#beforeEvent();
    const depth = this.#stack.length;
    if (depth === 0) {
      // Stream level (or before the root): keepalive whitespace is dropped, nothing else is
      // allowed.
      for (let i = 0; i < text.length; i++) {
        if (!isWs(text.charCodeAt(i))) throw strayTextError();
      }
      return;
    }
    if (this.#tooLong(text)) throw tokenError('text node');
    const children = this.#stack[depth - 1]!.children;
    const last = children.length - 1;
    // Adjacent text (e.g. around CDATA) is kept as one string so el.children stays simple.
    if (last >= 0 && typeof children[last] === 'string') children[last] += text;
    else children.push(text);
  }
}

interface WellFormedCheck {
  isWellFormed(): boolean;
}

const UNEXPECTED_CLOSE = 'unexpected close tag.';

/** Sets an attribute on a plain object. An attribute named __proto__ is a legal XML name; plain
 *  assignment would silently drop it (ltx needs ordinary objects, so no null prototype). */
function setAttr(attrs: Record<string, string>, name: string, value: string): void {
  if (name === '__proto__') {
    Object.defineProperty(attrs, name, { value, enumerable: true, writable: true, configurable: true });
  } else {
    attrs[name] = value;
  }
}

function strayTextError(): StreamError {
  return new StreamError('not-well-formed', 'character data at stream level');
}

function tokenError(what: string): StreamError {
  return new StreamError('policy-violation', `${what} too long (maxTokenBytes)`);
}

function handlerError(f: HandlerFailure): StreamError {
  const err = new StreamError('internal-server-error');
  err.cause = f.cause;
  return err;
}

/** Maps a saxes well-formedness error to the RFC 6120 condition. */
function classify(e: unknown): StreamError {
  const message = e instanceof Error ? e.message : String(e);
  let condition: StreamErrorCondition = 'not-well-formed';
  if (message.includes('undefined entity')) condition = 'restricted-xml';
  else if (message.includes('doctype')) condition = 'restricted-xml';
  else if (/XML declaration must (be|appear) at the start/.test(message)) condition = 'restricted-xml';
  else if (message.includes('unbound namespace prefix')) condition = 'bad-namespace-prefix';
  return new StreamError(condition, message);
}

/** End of the longest prefix of s[off..] that is at most `limit` UTF-8 bytes (at least one code
 *  point, and never splitting a surrogate pair), and its byte length. */
function prefixWithin(s: string, off: number, limit: number): [number, number] {
  const len = s.length;
  let bytes = 0;
  let i = off;
  while (i < len) {
    const c = s.charCodeAt(i);
    let w = 3;
    let n = 1;
    if (c < 0x80) w = 1;
    else if (c < 0x800) w = 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < len) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) { w = 4; n = 2; }
    }
    if (bytes + w > limit && i > off) break;
    bytes += w;
    i += n;
  }
  return [i, bytes];
}

/** Length of buf without a multi-byte sequence cut off at its end (which waits for more bytes). */
function completeLength(buf: Buffer): number {
  const n = buf.length;
  for (let k = 1; k <= 3 && k <= n; k++) {
    const b = buf[n - k]!;
    if (b < 0x80) return n;
    if (b >= 0xc0) {
      // Bytes that can never start a sequence are left for the validator to refuse now.
      if (b >= 0xf5 || b <= 0xc1) return n;
      const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
      return k < need ? n - k : n;
    }
    // A continuation byte: its lead byte is further back.
  }
  return n;
}

/** Offset of the first byte that is not part of a valid UTF-8 sequence (RFC 3629: no overlong
 *  forms, no surrogates, nothing above U+10FFFF). Only used once isUtf8() said there is one. */
function validUtf8Prefix(buf: Buffer): number {
  const n = buf.length;
  let i = 0;
  while (i < n) {
    const b = buf[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    if (b >= 0xc2 && b <= 0xdf) need = 2;
    else if (b >= 0xe0 && b <= 0xef) need = 3;
    else if (b >= 0xf0 && b <= 0xf4) need = 4;
    else return i;
    if (i + need > n) return i;
    let lo = 0x80;
    let hi = 0xbf;
    if (b === 0xe0) lo = 0xa0;
    else if (b === 0xed) hi = 0x9f;
    else if (b === 0xf0) lo = 0x90;
    else if (b === 0xf4) hi = 0x8f;
    const b1 = buf[i + 1]!;
    if (b1 < lo || b1 > hi) return i;
    for (let k = 2; k < need; k++) {
      if ((buf[i + k]! & 0xc0) !== 0x80) return i;
    }
    i += need;
  }
  return n;
}
