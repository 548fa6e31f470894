// StreamParser on hostile input: every violation gets its RFC 6120 condition exactly once, limits
// are enforced while streaming (measured by what saxes was actually given), and nothing escapes
// write().
import t, { type Test } from 'tap';
import { SaxesParser } from 'saxes';
import type { Element } from 'ltx';
import { StreamParser, type XmlLimits } from '../../lib/xml/stream-parser.js';
import type { StreamError } from '../../lib/errors.js';

const HEADER = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
  + " to='example.com' version='1.0'>";

// Count what reaches the tokenizer and how far it got, to prove work is bounded.
let saxChars = 0;
let saxPosition = 0;
const originalWrite = SaxesParser.prototype.write;
SaxesParser.prototype.write = function (this: SaxesParser, chunk: string | object | null) {
  if (typeof chunk === 'string') saxChars += chunk.length;
  try {
    return originalWrite.call(this, chunk);
  } finally {
    saxPosition = this.position;
  }
};
t.teardown(() => {
  SaxesParser.prototype.write = originalWrite;
});

interface Run {
  parser: StreamParser;
  errors: StreamError[];
  stanzas: Element[];
  ends: number;
  starts: number;
}

function run(limits?: Partial<XmlLimits>): Run {
  const r: Run = { parser: undefined as unknown as StreamParser, errors: [], stanzas: [], ends: 0, starts: 0 };
  r.parser = new StreamParser({
    streamStart: () => { r.starts++; },
    stanza: (el) => { r.stanzas.push(el); },
    streamEnd: () => { r.ends++; },
    error: (e) => { r.errors.push(e); },
  }, limits);
  return r;
}

/** Feeds the input whole, byte by byte, and in 7-byte chunks; each must give the same single error. */
function expectError(t: Test, name: string, input: string | Buffer, condition: string,
  opts: { limits?: Partial<XmlLimits>; stanzas?: number; ends?: number } = {}): void {
  const bytes = typeof input === 'string' ? Buffer.from(input) : input;
  const feeds: Array<[string, (r: Run) => void]> = [
    ['whole', (r) => r.parser.write(input)],
    ['byte by byte', (r) => { for (let i = 0; i < bytes.length; i++) r.parser.write(bytes.subarray(i, i + 1)); }],
    ['7-byte chunks', (r) => { for (let i = 0; i < bytes.length; i += 7) r.parser.write(bytes.subarray(i, i + 7)); }],
  ];
  for (const [how, feed] of feeds) {
    const r = run(opts.limits);
    t.doesNotThrow(() => feed(r), `${name} (${how}): write does not throw`);
    // More input after the failure, good and bad, is ignored.
    r.parser.write('<presence/><!-- again --></stream:stream>');
    r.parser.write(Buffer.from([0xff, 0xfe]));
    t.same(r.errors.map((e) => e.condition), [condition], `${name} (${how}): ${r.errors.map((e) => e.text).join('; ')}`);
    t.equal(r.parser.failed, true, `${name} (${how}): failed`);
    t.equal(r.stanzas.length, opts.stanzas ?? 0, `${name} (${how}): stanzas before the error`);
    t.equal(r.ends, opts.ends ?? 0, `${name} (${how}): stream ends`);
  }
}

t.test('restricted XML (RFC 6120 §11.1)', async (t) => {
  expectError(t, 'comment at stream level', `${HEADER}<!-- hi --><message/>`, 'restricted-xml');
  expectError(t, 'comment in a stanza', `${HEADER}<message><!-- hi --></message>`, 'restricted-xml');
  expectError(t, 'comment before the header', `<!-- hi -->${HEADER}`, 'restricted-xml');
  expectError(t, 'PI before the header', `<?evil x?>${HEADER}`, 'restricted-xml');
  expectError(t, 'PI in a stanza', `${HEADER}<message><?evil x?></message>`, 'restricted-xml');
  expectError(t, 'PI at stream level', `${HEADER}<?evil x?><message/>`, 'restricted-xml');
  expectError(t, 'misplaced XML declaration', `${HEADER}<?xml version='1.0'?>`, 'restricted-xml');
  expectError(t, 'DOCTYPE before the header', `<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'y'>]>${HEADER}`, 'restricted-xml');
  expectError(t, 'DOCTYPE in the stream', `${HEADER}<!DOCTYPE foo [<!ENTITY x 'y'>]><message/>`, 'restricted-xml');
  expectError(t, 'undefined entity', `${HEADER}<message><body>&xxe;</body></message>`, 'restricted-xml');
  expectError(t, 'undefined entity in attribute', `${HEADER}<message to='&xxe;'/>`, 'restricted-xml');
  expectError(t, 'XML 1.1', `<?xml version='1.1'?>${HEADER}`, 'restricted-xml');
  expectError(t, 'XML declaration without version', `<?xml encoding='UTF-8'?>${HEADER}`, 'not-well-formed');
});

t.test('encodings', async (t) => {
  expectError(t, 'declared Latin-1', `<?xml version='1.0' encoding='ISO-8859-1'?>${HEADER}`, 'unsupported-encoding');
  expectError(t, 'UTF-16 LE', Buffer.from(`\ufeff${HEADER}`, 'utf16le'), 'unsupported-encoding');
  expectError(t, 'UTF-16 BE BOM', Buffer.from([0xfe, 0xff, 0x00, 0x3c]), 'unsupported-encoding');
  expectError(t, 'invalid UTF-8', Buffer.concat([Buffer.from(`${HEADER}<message><body>`), Buffer.from([0xc3, 0x28]), Buffer.from('</body></message>')]), 'not-well-formed');
  expectError(t, 'overlong UTF-8', Buffer.concat([Buffer.from(`${HEADER}<message>`), Buffer.from([0xc0, 0xbc]), Buffer.from('</message>')]), 'not-well-formed');
  expectError(t, 'UTF-8 surrogate', Buffer.concat([Buffer.from(`${HEADER}<message>`), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('</message>')]), 'not-well-formed');
  const bad = (bytes: number[]) => Buffer.concat([Buffer.from(`${HEADER}<message><body>`), Buffer.from(bytes), Buffer.from('</body></message>')]);
  expectError(t, 'overlong 3-byte form', bad([0xe0, 0x9f, 0xbf]), 'not-well-formed');
  expectError(t, 'overlong 4-byte form', bad([0xf0, 0x8f, 0xbf, 0xbf]), 'not-well-formed');
  expectError(t, 'above U+10FFFF', bad([0xf4, 0x90, 0x80, 0x80]), 'not-well-formed');
  expectError(t, 'bad continuation byte', bad([0xe2, 0x28, 0xa1]), 'not-well-formed');
  expectError(t, 'truncated sequence before ASCII', bad([0xe2, 0x82]), 'not-well-formed');
  expectError(t, 'lone continuation bytes', bad([0x80, 0x80, 0x80, 0x80]), 'not-well-formed');
  expectError(t, 'stray 0xff after a stanza', Buffer.concat([Buffer.from(`${HEADER}<message/>`), Buffer.from([0xff])]), 'not-well-formed', { stanzas: 1 });
  expectError(t, 'utf-8 declared is fine, then bad XML', `<?xml version='1.0' encoding='utf-8'?>${HEADER}<a></b>`, 'not-well-formed');

  const r = run();
  r.parser.write(`${HEADER}<message>\ud800</message>`);
  t.same(r.errors.map((e) => e.condition), ['not-well-formed'], 'lone surrogate in a string chunk');

  const r2 = run();
  r2.parser.write(Buffer.from(`${HEADER}<message><body>\xe2`, 'latin1'));
  r2.parser.write('x</body></message>');
  t.same(r2.errors.map((e) => e.condition), ['not-well-formed'], 'half a UTF-8 sequence followed by a string');
});

t.test('malformed XML', async (t) => {
  expectError(t, 'mismatched close inside a stanza', `${HEADER}<message><body></message>`, 'not-well-formed');
  expectError(t, 'mismatched close of a stanza', `${HEADER}<message></iq><presence/>`, 'not-well-formed');
  expectError(t, 'stream closed inside a stanza', `${HEADER}<message></stream:stream>`, 'not-well-formed');
  expectError(t, 'wrong close at stream level', `${HEADER}<message/></stream:foo>`, 'not-well-formed', { stanzas: 1 });
  expectError(t, 'close tag without open', `${HEADER}</message>`, 'not-well-formed');
  expectError(t, 'text at stream level', `${HEADER}hello<message/>`, 'not-well-formed');
  expectError(t, 'text at stream level at the end of input', `${HEADER}<message/>  hello`, 'not-well-formed', { stanzas: 1 });
  expectError(t, 'mismatched close followed by text', `${HEADER}<message></iq>x`, 'not-well-formed');
  expectError(t, 'mismatched close followed by an entity', `${HEADER}<message></iq>&amp;<a/>`, 'not-well-formed');
  expectError(t, 'text between stanzas', `${HEADER}<message/>x<message/>`, 'not-well-formed', { stanzas: 1 });
  expectError(t, 'entity at stream level', `${HEADER}&#32;<message/>`, 'not-well-formed');
  expectError(t, 'CDATA at stream level', `${HEADER}<![CDATA[ ]]><message/>`, 'not-well-formed');
  expectError(t, 'text before the header', `hello${HEADER}`, 'not-well-formed');
  expectError(t, 'duplicate attribute', `${HEADER}<message to='a' to='b'/>`, 'not-well-formed');
  expectError(t, 'unquoted attribute', `${HEADER}<message to=a/>`, 'not-well-formed');
  expectError(t, 'forbidden character reference', `${HEADER}<message><body>&#0;</body></message>`, 'not-well-formed');
  expectError(t, 'control character', `${HEADER}<message><body>\u0001</body></message>`, 'not-well-formed');
  expectError(t, 'bad entity name', `${HEADER}<message><body>& x;</body></message>`, 'not-well-formed');
  expectError(t, 'element after the end', `${HEADER}</stream:stream><message/>`, 'not-well-formed', { ends: 1 });
  expectError(t, 'second root', `${HEADER}</stream:stream>${HEADER}`, 'not-well-formed', { ends: 1 });
  expectError(t, 'text after the end', `${HEADER}</stream:stream>  x`, 'not-well-formed', { ends: 1 });
  expectError(t, 'comment after the end', `${HEADER}</stream:stream><!-- x -->`, 'not-well-formed', { ends: 1 });
  expectError(t, 'valid stanza then garbage', `${HEADER}<message/><<`, 'not-well-formed', { stanzas: 1 });
});

t.test('namespaces', async (t) => {
  expectError(t, 'unbound element prefix', `${HEADER}<x:message/>`, 'bad-namespace-prefix');
  expectError(t, 'unbound attribute prefix', `${HEADER}<message x:to='a'/>`, 'bad-namespace-prefix');
  expectError(t, 'unbound prefix on the root', "<stream:stream xmlns='jabber:client'>", 'bad-namespace-prefix');
  expectError(t, 'rebinding xml', `${HEADER}<message xmlns:xml='urn:x'/>`, 'not-well-formed');
});

t.test('whitespace after the end is fine', async (t) => {
  const r = run();
  r.parser.write(`${HEADER}<message/></stream:stream> \n `);
  r.parser.write(' \r\n\t');
  t.equal(r.ends, 1);
  t.same(r.errors, []);
});

t.test('depth limit', async (t) => {
  expectError(t, 'depth 9 with maxDepth 8', `${HEADER}${'<a>'.repeat(9)}`, 'policy-violation', { limits: { maxDepth: 8 } });

  const r = run();
  saxChars = 0;
  r.parser.write(`${HEADER}<message/>${'<a>'.repeat(10000)}${'</a>'.repeat(10000)}`);
  t.same(r.errors.map((e) => e.condition), ['policy-violation']);
  t.match(r.errors[0]!.text, /maxDepth/);
  t.equal(r.stanzas.length, 1, 'the stanza before is delivered');
  // saxes stopped right at the 65th '<a>' instead of reading all 10,000.
  const stopAt = HEADER.length + '<message/>'.length + 65 * 3;
  t.equal(saxPosition, stopAt, 'tokenizer stopped at depth maxDepth+1');
});

t.test('attribute limit counts namespace declarations', async (t) => {
  expectError(t, '6 attributes with maxAttributes 5', `${HEADER}<message a='1' b='2' c='3' d='4' xmlns:e='urn:e' f='6'/>`,
    'policy-violation', { limits: { maxAttributes: 5 } });
  expectError(t, '65 attributes', `${HEADER}<message ${Array.from({ length: 65 }, (_, i) => `a${i}='x'`).join(' ')}/>`, 'policy-violation');
  expectError(t, 'too many attributes on the root',
    `<stream ${Array.from({ length: 70 }, (_, i) => `a${i}='x'`).join(' ')}>`, 'policy-violation');
});

t.test('token limit', async (t) => {
  const limits = { maxTokenBytes: 600 };
  expectError(t, 'attribute value', `${HEADER}<message id='${'x'.repeat(601)}'/>`, 'policy-violation', { limits });
  expectError(t, 'attribute value in multibyte characters', `${HEADER}<message id='${'日'.repeat(201)}'/>`, 'policy-violation', { limits });
  expectError(t, 'text node', `${HEADER}<message><body>${'x'.repeat(601)}</body></message>`, 'policy-violation', { limits });
  expectError(t, 'text node with entities', `${HEADER}<message><body>${'&amp;'.repeat(601)}</body></message>`, 'policy-violation', { limits });
  expectError(t, 'CDATA', `${HEADER}<message><body><![CDATA[${'x'.repeat(601)}]]></body></message>`, 'policy-violation', { limits });
  expectError(t, 'element name', `${HEADER}<${'m'.repeat(601)}/>`, 'policy-violation', { limits });
  expectError(t, 'attribute name', `${HEADER}<message ${'a'.repeat(601)}='1'/>`, 'policy-violation', { limits });
  expectError(t, 'header attribute', `<stream to='${'x'.repeat(601)}'>`, 'policy-violation', { limits });
});

t.test('stanza size limit', async (t) => {
  const limits = { maxStanzaBytes: 4096 };
  const prefix = '<message><body>';
  const suffix = '</body></message>';
  const over = prefix + 'é'.repeat((4096 - prefix.length - suffix.length) / 2) + 'x' + suffix;
  t.equal(Buffer.byteLength(over), 4097);
  expectError(t, 'one byte over, multibyte text', HEADER + over, 'policy-violation', { limits });
  expectError(t, 'one byte over after a good stanza', `${HEADER}<presence/>\n${over}`, 'policy-violation', { limits, stanzas: 1 });
  expectError(t, 'stream header too large', `<stream${" a='x'".repeat(700)}>`, 'policy-violation', { limits });
  expectError(t, 'unterminated comment is cut off by size', `${HEADER}<!--${'x'.repeat(5000)}`, 'policy-violation', { limits });
  expectError(t, 'huge DOCTYPE is cut off by size', `<!DOCTYPE x [${' '.repeat(5000)}`, 'policy-violation', { limits });
  expectError(t, 'whitespace inside a stanza counts', `${HEADER}<message>${' '.repeat(5000)}</message>`, 'policy-violation', { limits });
});

t.test('a 32 MB attribute is refused fast, having read only maxStanzaBytes', async (t) => {
  const head = Buffer.from(`${HEADER}<message to='`);
  const body = Buffer.alloc(32 * 1024 * 1024, 'a');
  for (const chunkSize of [64 * 1024, body.length]) {
    const r = run();
    saxChars = 0;
    r.parser.write(head);
    for (let i = 0; i < body.length; i += chunkSize) r.parser.write(body.subarray(i, i + chunkSize));
    r.parser.write("'/>");
    t.same(r.errors.map((e) => e.condition), ['policy-violation'], `chunks of ${chunkSize}`);
    t.match(r.errors[0]!.text, /maxStanzaBytes/);
    // Fast because bounded: the tokenizer never reads past the limit (timing is the bench's job).
    t.ok(saxChars <= head.length + 262144 + 1, `saxes saw ${saxChars} characters`);
  }
});

t.test('a 32 MB text node across many writes is refused early', async (t) => {
  const r = run();
  r.parser.write(`${HEADER}<message><body>`);
  const chunk = Buffer.alloc(16 * 1024, 'b');
  let written = 0;
  while (!r.parser.failed && written < 32 * 1024 * 1024) {
    r.parser.write(chunk);
    written += chunk.length;
  }
  t.same(r.errors.map((e) => e.condition), ['policy-violation']);
  t.ok(written <= 262144 + chunk.length, `failed after ${written} bytes`);
});

t.test('exceptions from handlers', async (t) => {
  const errors: StreamError[] = [];
  let stanzas = 0;
  const parser = new StreamParser({
    streamStart: () => undefined,
    stanza: () => {
      stanzas++;
      throw new Error('boom');
    },
    streamEnd: () => undefined,
    error: (e) => errors.push(e),
  });
  t.doesNotThrow(() => parser.write(`${HEADER}<message/><message/>`));
  t.equal(stanzas, 1, 'no more stanzas after the failure');
  t.same(errors.map((e) => e.condition), ['internal-server-error']);
  t.match((errors[0]!.cause as Error).message, 'boom', 'original exception kept as cause');
  parser.write('<message/>');
  t.equal(errors.length, 1);
});

t.test('a handler exception while delivering the stanza before a parse error', async (t) => {
  const errors: StreamError[] = [];
  const parser = new StreamParser({
    streamStart: () => undefined,
    stanza: () => {
      throw new Error('boom');
    },
    streamEnd: () => undefined,
    error: (e) => errors.push(e),
  });
  parser.write(`${HEADER}<message/>&xxe;`);
  t.same(errors.map((e) => e.condition), ['internal-server-error'], 'the first failure wins');
});

t.test('errors are never reported twice', async (t) => {
  const r = run();
  r.parser.write(`${HEADER}<message><!-- x -->`);
  for (let i = 0; i < 20; i++) {
    r.parser.write('<!-- more --><a></b>&xxe;');
    r.parser.write(Buffer.from([0xff]));
  }
  r.parser.write(`${'<a>'.repeat(100)}</stream:stream>`);
  t.equal(r.errors.length, 1);
  t.equal(r.ends, 0);
});
