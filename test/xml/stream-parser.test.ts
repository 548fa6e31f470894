// StreamParser on well-behaved input: events, namespace normalisation, chunking independence,
// split UTF-8, round trips, keepalives and stream restarts.
import t from 'tap';
import { SaxesParser } from 'saxes';
import type { Element } from 'ltx';
import {
  DEFAULT_XML_LIMITS, StreamParser, type StreamHeader, type XmlLimits,
} from '../../lib/xml/stream-parser.js';
import { NS_STREAM } from '../../lib/xml/ns.js';

const HEADER = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
  + " to='example.com' version='1.0' xml:lang='en'>";

// Count what reaches the tokenizer, to prove keepalives never do.
let saxChars = 0;
const originalWrite = SaxesParser.prototype.write;
SaxesParser.prototype.write = function (this: SaxesParser, chunk: string | object | null) {
  if (typeof chunk === 'string') saxChars += chunk.length;
  return originalWrite.call(this, chunk);
};
t.teardown(() => {
  SaxesParser.prototype.write = originalWrite;
});

interface Run {
  parser: StreamParser;
  events: string[];
  stanzas: Element[];
  headers: StreamHeader[];
}

/** A parser whose events are recorded as strings, so whole runs can be compared. */
function run(limits?: Partial<XmlLimits>): Run {
  const events: string[] = [];
  const stanzas: Element[] = [];
  const headers: StreamHeader[] = [];
  const parser = new StreamParser({
    streamStart: (h) => {
      headers.push(h);
      events.push(`start ${JSON.stringify(h)}`);
    },
    stanza: (el) => {
      stanzas.push(el);
      events.push(`stanza ${el.toString()}`);
    },
    streamEnd: () => events.push('end'),
    error: (e) => events.push(`error ${e.condition}`),
  }, limits);
  return { parser, events, stanzas, headers };
}

function parseAll(input: string | Buffer, limits?: Partial<XmlLimits>): Run {
  const r = run(limits);
  r.parser.write(input);
  return r;
}

/** Parses one stanza inside a standard jabber:client stream. */
function parseStanza(xml: string): Element {
  const r = parseAll(HEADER + xml);
  if (r.stanzas.length !== 1) throw new Error(`expected one stanza, got: ${r.events.join(' | ')}`);
  return r.stanzas[0]!;
}

// Deterministic PRNG so a failing chunking can be reproduced.
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x ^= x + Math.imul(x ^ (x >>> 7), 61 | x);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function randomCuts(length: number, rand: () => number, maxPiece: number): number[] {
  const cuts: number[] = [];
  let i = 0;
  while (i < length) {
    i = Math.min(length, i + 1 + Math.floor(rand() * maxPiece));
    cuts.push(i);
  }
  return cuts;
}

const RICH_STREAM = `<?xml version='1.0' encoding='UTF-8'?>${HEADER}
  <message to='juliet@example.com' type='chat' xml:lang='fr'><body>Bonjour &lt;3 &amp; "quotes" 'single' &#x1F600;&#169;</body></message>
  \t\r\n
  <iq type='get' id='q1'><query xmlns='jabber:iq:roster' ver=''/></iq><presence/>
  <message><body>日本語のテキスト 😀👍🏽 e\u0301 Ω</body><x:html xmlns:x='http://jabber.org/protocol/xhtml-im'><x:body><x:p>a<![CDATA[ <b>not markup</b> & ]]>z</x:p></x:body></x:html></message>
  <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>
  <iq type='set' id='s1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'><item><entry xmlns='http://www.w3.org/2005/Atom'><title>t</title></entry></item></publish></pubsub></iq>
</stream:stream>  \n`;

t.test('a stream produces header, stanzas and end', async (t) => {
  const r = parseAll(`<?xml version='1.0'?>${HEADER}<message to='a@b'><body>hi</body></message></stream:stream>`);
  t.same(r.headers, [{
    name: 'stream:stream',
    ns: NS_STREAM,
    contentNs: 'jabber:client',
    attrs: { to: 'example.com', version: '1.0', 'xml:lang': 'en' },
  }]);
  t.same(r.events.slice(1), ['stanza <message to="a@b"><body>hi</body></message>', 'end']);
  t.equal(r.parser.failed, false);
});

t.test('stanzas are detached and children know their parent', async (t) => {
  const el = parseStanza("<message><body>x</body><thread>y</thread></message>");
  t.equal(el.parent, null);
  t.equal(el.children.length, 2);
  for (const child of el.children) t.equal((child as Element).parent, el);
});

t.test('namespace normalisation', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['stanza in the content namespace gets no xmlns', '<message/>', '<message/>'],
    ['explicit content namespace is dropped', "<message xmlns='jabber:client'/>", '<message/>'],
    ['prefixed element becomes unprefixed', "<x:foo xmlns:x='urn:a'/>", '<foo xmlns="urn:a"/>'],
    ['child in the parent namespace gets no xmlns',
      "<iq><query xmlns='urn:q'><item/><q:item xmlns:q='urn:q'/></query></iq>",
      '<iq><query xmlns="urn:q"><item/><item/></query></iq>'],
    ['child leaving a namespace gets xmlns', "<iq><a xmlns='urn:a'><b xmlns='urn:b'><c/></b><d/></a></iq>",
      '<iq><a xmlns="urn:a"><b xmlns="urn:b"><c/></b><d/></a></iq>'],
    ['element in no namespace', "<iq><a xmlns='urn:a'><b xmlns=''/></a></iq>",
      '<iq><a xmlns="urn:a"><b xmlns=""/></a></iq>'],
    ['stream:features', '<stream:features><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"/></stream:features>',
      `<features xmlns="${NS_STREAM}"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"/></features>`],
    ['stream:error', "<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
      `<error xmlns="${NS_STREAM}"><conflict xmlns="urn:ietf:params:xml:ns:xmpp-streams"/></error>`],
    ['xml:lang is kept', "<message xml:lang='de'><body xml:lang='fr'>x</body></message>",
      '<message xml:lang="de"><body xml:lang="fr">x</body></message>'],
    ['prefixed attribute keeps the declaration it needs',
      "<message xmlns:e='urn:e'><body e:flag='1'>x</body></message>",
      '<message><body e:flag="1" xmlns:e="urn:e">x</body></message>'],
    ['unused declarations are dropped', "<message xmlns:e='urn:e'/>", '<message/>'],
  ];
  for (const [name, input, expected] of cases) {
    t.equal(parseStanza(input).toString(), expected, name);
  }
});

t.test('a prefix declared on the stream root is resolved inside stanzas', async (t) => {
  const r = parseAll("<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
    + " xmlns:db='jabber:server:dialback' xmlns:e='urn:e' version='1.0'>"
    + "<db:result from='a' to='b'>key</db:result><message e:x='1'/>");
  t.equal(r.headers[0]!.contentNs, 'jabber:server');
  t.same(r.headers[0]!.attrs, { version: '1.0' }, 'declarations are not attributes');
  t.same(r.events.slice(1), [
    'stanza <result xmlns="jabber:server:dialback" from="a" to="b">key</result>',
    'stanza <message e:x="1" xmlns:e="urn:e"/>',
  ]);
});

t.test('header reflects a root that is not stream:stream', async (t) => {
  const r = parseAll("<foo xmlns='jabber:client' bar='1'>");
  t.same(r.headers, [{ name: 'foo', ns: 'jabber:client', contentNs: 'jabber:client', attrs: { bar: '1' } }]);
  const r2 = parseAll("<stream:stream xmlns:stream='urn:wrong' to='x'>");
  t.same(r2.headers, [{ name: 'stream:stream', ns: 'urn:wrong', contentNs: '', attrs: { to: 'x' } }]);
  t.equal(r2.parser.failed, false, 'the caller decides about invalid-namespace');
});

t.test('a stream without a default namespace gives unqualified stanzas', async (t) => {
  const r = parseAll("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><message/><a xmlns='urn:a'/>");
  t.equal(r.headers[0]!.contentNs, '');
  t.same(r.events.slice(1), ['stanza <message/>', 'stanza <a xmlns="urn:a"/>']);
});

t.test('self-closing root starts and ends the stream', async (t) => {
  const r = parseAll("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'/>");
  t.equal(r.events.length, 2);
  t.equal(r.events[1], 'end');
});

t.test('text: entities decoded, CDATA merged, serialisation re-escapes', async (t) => {
  const el = parseStanza("<message><body>a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos; &#65;&#x42;<![CDATA[<e>&]]>f</body></message>");
  const body = el.getChild('body')!;
  t.same(body.children, ['a <b> & "c" \'d\' AB<e>&f'], 'one string child');
  t.equal(el.toString(), '<message><body>a &lt;b&gt; &amp; "c" \'d\' AB&lt;e&gt;&amp;f</body></message>');
});

t.test('attribute values are decoded', async (t) => {
  const el = parseStanza(`<message id="&lt;&amp;&gt;&quot;&apos;" to='"x"' from="'y'"/>`);
  t.same(el.attrs, { id: '<&>"\'', to: '"x"', from: "'y'" });
});

t.test('same events whatever the chunking', async (t) => {
  const whole = parseAll(RICH_STREAM);
  t.equal(whole.parser.failed, false, whole.events.join('\n'));
  t.equal(whole.stanzas.length, 6);
  t.equal(whole.events.at(-1), 'end');
  const bytes = Buffer.from(RICH_STREAM);

  const byteByByte = run();
  for (let i = 0; i < bytes.length; i++) byteByByte.parser.write(bytes.subarray(i, i + 1));
  t.same(byteByByte.events, whole.events, 'byte by byte (Buffer)');

  const charByChar = run();
  for (let i = 0; i < RICH_STREAM.length; i++) charByChar.parser.write(RICH_STREAM[i]!);
  t.same(charByChar.events, whole.events, 'UTF-16 code unit by code unit (string, splits surrogate pairs)');

  const rand = rng(42);
  for (let round = 0; round < 60; round++) {
    const r = run();
    let prev = 0;
    for (const cut of randomCuts(bytes.length, rand, round < 30 ? 8 : 300)) {
      r.parser.write(bytes.subarray(prev, cut));
      prev = cut;
    }
    t.same(r.events, whole.events, `random Buffer chunking #${round}`);
  }
  for (let round = 0; round < 20; round++) {
    const r = run();
    let prev = 0;
    for (const cut of randomCuts(RICH_STREAM.length, rand, 40)) {
      r.parser.write(RICH_STREAM.slice(prev, cut));
      prev = cut;
    }
    t.same(r.events, whole.events, `random string chunking #${round}`);
  }
});

t.test('a chunk of several MB with characters across internal slice boundaries', async (t) => {
  const one = (i: number) => `<message id='${i}'><body>${'€😀日'.repeat(i % 7)}x</body></message>`;
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < 3.5 * 1024 * 1024; i++) {
    const p = one(i);
    parts.push(p);
    size += Buffer.byteLength(p);
  }
  const r = parseAll(Buffer.from(HEADER + parts.join('')));
  t.equal(r.parser.failed, false, r.events.at(-1) ?? '');
  t.equal(r.stanzas.length, parts.length);
  const bad = r.stanzas.findIndex((el, i) => el.getChildText('body') !== `${'€😀日'.repeat(i % 7)}x`);
  t.equal(bad, -1, 'every body intact');
});

t.test('split UTF-8 sequences are reassembled', async (t) => {
  for (const ch of ['é', '€', '日', '😀', '👍🏽']) {
    const bytes = Buffer.from(`${HEADER}<message><body>[${ch}]</body></message>`);
    const at = bytes.indexOf(Buffer.from(ch));
    const width = Buffer.byteLength(ch);
    for (let cut = at + 1; cut < at + width; cut++) {
      const r = run();
      r.parser.write(bytes.subarray(0, cut));
      r.parser.write(bytes.subarray(cut));
      t.equal(r.stanzas[0]?.getChildText('body'), `[${ch}]`, `${ch} cut after byte ${cut - at}`);
    }
  }
});

t.test('a leading byte order mark is accepted', async (t) => {
  const r = parseAll(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(`<?xml version='1.0'?>${HEADER}<presence/>`)]));
  t.same(r.events.slice(1), ['stanza <presence/>']);
});

t.test('whitespace before the header, e.g. a keepalive across a restart, is dropped', async (t) => {
  const r = run();
  r.parser.write('  \n');
  r.parser.write(`\t <?xml version='1.0'?>${HEADER}<presence/>`);
  r.parser.reset();
  r.parser.write(' ');
  r.parser.write(`\ufeff<?xml version='1.0'?>${HEADER}`);
  t.equal(r.parser.failed, true, 'a byte order mark is only allowed first');
  r.parser.reset();
  r.parser.write(`\ufeff<?xml version='1.0'?>${HEADER}<presence/>`);
  t.equal(r.parser.failed, false, r.events.join('\n'));
  t.equal(r.headers.length, 2);
  t.equal(r.stanzas.length, 2);
});

t.test('markup-like text inside CDATA is just text', async (t) => {
  const r = parseAll(`<?xml version='1.0'?>${HEADER}<message><body><![CDATA[<!DOCTYPE x> <!-- c --> <?pi?> <a>]]></body></message>`);
  t.equal(r.parser.failed, false, r.events.join('\n'));
  t.equal(r.stanzas[0]?.getChildText('body'), '<!DOCTYPE x> <!-- c --> <?pi?> <a>');
});

t.test('an attribute named __proto__ survives', async (t) => {
  const el = parseStanza("<message __proto__='x' to='y'/>");
  t.equal(Object.getPrototypeOf(el.attrs), Object.prototype, 'no prototype change');
  t.equal(el.attrs.__proto__, 'x');
  t.equal(el.toString(), '<message __proto__="x" to="y"/>');
  const r = parseAll("<stream:stream xmlns:stream='http://etherx.jabber.org/streams' __proto__='z'>");
  t.same(Object.entries(r.headers[0]!.attrs), [['__proto__', 'z']]);
});

// Parser speed is measured by `npm run bench`, not here: this checks that a long stream cut into
// 16 KiB chunks (splitting stanzas and multibyte characters anywhere) yields every stanza intact.
t.test('20,000 stanzas in 16 KiB chunks all arrive intact', async (t) => {
  const one = (i: number) => `<message to='juliet@example.com/balcony' from='romeo@example.net/orchard' type='chat' id='m${i}'>`
    + `<body>Wherefore art thou, Romeo? ${i} 😀</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>`;
  const bytes = Buffer.from(Array.from({ length: 20000 }, (_, i) => one(i)).join(''));
  const r = run();
  r.parser.write(HEADER);
  for (let i = 0; i < bytes.length; i += 16384) r.parser.write(bytes.subarray(i, i + 16384));
  t.equal(r.stanzas.length, 20000);
  t.equal(r.stanzas[12345]!.attrs.id, 'm12345');
  t.equal(r.stanzas[19999]!.getChildText('body'), 'Wherefore art thou, Romeo? 19999 😀');
});

t.test('round trip: parse -> toString -> parse is stable', async (t) => {
  const stanzas = [
    "<message to='a@b/c' from='d@e' type='chat' id='1'><body>😀 emoji, 日本語 CJK, e\u0301 combining, 한국어</body></message>",
    "<message id='&amp;&lt;&gt;&quot;&apos;'><body>&amp; &lt; &gt; \" ' &amp;amp; ]]&gt;</body><subject>x</subject></message>",
    "<iq type='result' id='r'><query xmlns='jabber:iq:roster'><item jid='a@b' name='Ünïcødé 😀 &quot;q&quot;'><group>Friends &amp; Family</group></item></query></iq>",
    "<message><x:x xmlns:x='urn:a'><y:y xmlns:y='urn:b'><z xmlns='urn:c'><x:w/></z></y:y></x:x></message>",
    "<message xml:lang='de'><body xml:lang='en'>hi</body><body>hallo</body></message>",
    "<message xmlns:e='urn:e'><data e:type='x' e:enc='y'>1</data></message>",
    "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='Q=='/><x xmlns='vcard-temp:x:update'><photo/></x></presence>",
    `<message><body>${'long text '.repeat(2000)}</body></message>`,
  ];
  for (const xml of stanzas) {
    const first = parseStanza(xml);
    const text = first.toString();
    const second = parseStanza(text);
    t.equal(second.toString(), text, `stable: ${xml.slice(0, 50)}`);
  }
  const uni = parseStanza(stanzas[0]!);
  t.equal(uni.getChildText('body'), '😀 emoji, 日本語 CJK, e\u0301 combining, 한국어', 'unicode intact');
  const special = parseStanza(stanzas[1]!);
  t.equal(special.attrs.id, '&<>"\'');
  t.equal(special.getChildText('body'), '& < > " \' &amp; ]]>');
  const nested = parseStanza(stanzas[3]!);
  t.equal(nested.toString(),
    '<message><x xmlns="urn:a"><y xmlns="urn:b"><z xmlns="urn:c"><w xmlns="urn:a"/></z></y></x></message>');
});

t.test('keepalive whitespace', async (t) => {
  const r = run();
  r.parser.write(HEADER);
  saxChars = 0;
  const ws = ' \n\t\r '.repeat(200);
  let total = 0;
  while (total < 10 * 1024 * 1024) {
    r.parser.write(Buffer.from(ws));
    r.parser.write(ws);
    total += 2 * ws.length;
  }
  r.parser.write('<presence/>');
  // And the same volume as one write.
  r.parser.write(' '.repeat(10 * 1024 * 1024));
  r.parser.write('<presence/>');
  t.same(r.events.slice(1), ['stanza <presence/>', 'stanza <presence/>']);
  // The guarantee: the tokenizer never sees keepalive whitespace (so it costs no parse time).
  t.equal(saxChars, 2 * '<presence/>'.length, 'the tokenizer never saw the whitespace');

  // Whitespace that arrives in the same chunk as a stanza's end reaches saxes, but only that.
  saxChars = 0;
  r.parser.write(`<presence/>${' '.repeat(1000)}`);
  for (let i = 0; i < 1000; i++) r.parser.write(' '.repeat(1000));
  r.parser.write('<presence/>');
  t.equal(saxChars, 2 * '<presence/>'.length + 1000);
  t.equal(r.stanzas.length, 4);
});

t.test('reset() starts a new stream', async (t) => {
  const r = run();
  r.parser.write(`<?xml version='1.0'?>${HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`);
  t.equal(r.stanzas.length, 1);
  r.parser.write(Buffer.from([0xf0, 0x9f])); // half a character left in the decoder
  r.parser.reset();
  r.parser.write(`<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><presence/>`);
  t.equal(r.parser.failed, false, r.events.join('\n'));
  t.equal(r.headers.length, 2);
  t.equal(r.headers[1]!.contentNs, 'jabber:server');
  t.same(r.events.slice(-1), ['stanza <presence/>']);
  r.parser.write('</stream:stream>');
  t.equal(r.events.at(-1), 'end');
});

t.test('reset() from a handler drops the rest of the chunk (STARTTLS injection)', async (t) => {
  const events: string[] = [];
  const parser: StreamParser = new StreamParser({
    streamStart: () => events.push('start'),
    stanza: (el) => {
      events.push(`stanza ${el.name}`);
      if (el.name === 'starttls') parser.reset();
    },
    streamEnd: () => events.push('end'),
    error: (e) => events.push(`error ${e.condition}`),
  });
  parser.write(`${HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><message to='victim'><body>injected</body></message>`);
  t.same(events, ['start', 'stanza starttls'], 'nothing after <starttls/> was read');
  // The injected bytes did not survive as parser state either: the new stream parses cleanly.
  parser.write(`<?xml version='1.0'?>${HEADER}<presence/>`);
  t.same(events, ['start', 'stanza starttls', 'start', 'stanza presence']);

  // Also when the remainder is incomplete or broken: no error leaks into the new stream.
  events.length = 0;
  parser.reset();
  parser.write(`${HEADER}<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>&bogus;<mess`);
  parser.write(`${HEADER}<presence/>`);
  t.same(events, ['start', 'stanza starttls', 'start', 'stanza presence']);
});

t.test('reset() clears a failure', async (t) => {
  const r = parseAll(`${HEADER}<!-- x -->`);
  t.equal(r.parser.failed, true);
  r.parser.reset();
  t.equal(r.parser.failed, false);
  r.parser.write(`${HEADER}<presence/>`);
  t.same(r.events.slice(-2), [`start ${JSON.stringify(r.headers[0])}`, 'stanza <presence/>']);
});

t.test('many stanzas in one chunk larger than maxStanzaBytes', async (t) => {
  const one = "<message to='a@b'><body>日本語 😀 hello</body></message> ";
  const count = 5000;
  const r = parseAll(HEADER + one.repeat(count), { maxStanzaBytes: 1000 });
  t.equal(r.parser.failed, false, r.events.join('\n'));
  t.equal(r.stanzas.length, count);
});

t.test('limits at exactly the maximum are accepted', async (t) => {
  const limits = { maxStanzaBytes: 4096, maxDepth: 8, maxAttributes: 5, maxTokenBytes: 600 };
  const deep = '<a>'.repeat(8) + '</a>'.repeat(8);
  const attrs = "<message a='1' b='2' c='3' d='4' xmlns:e='urn:e'/>";
  const token = `<message id='${'x'.repeat(600)}'><body>${'日'.repeat(200)}</body></message>`;
  const prefix = '<message><body>';
  const suffix = '</body></message>';
  const exact = prefix + 'é'.repeat((4096 - prefix.length - suffix.length) / 2) + suffix;
  t.equal(Buffer.byteLength(exact), 4096);
  const r = parseAll(HEADER + deep + attrs + token, limits);
  t.equal(r.parser.failed, false, r.events.join('\n'));
  t.equal(r.stanzas.length, 3);
  // Whitespace before a stanza is not charged to it.
  const r2 = parseAll(HEADER + '\n'.repeat(5000) + exact + ' '.repeat(5000) + exact, { maxStanzaBytes: 4096 });
  t.equal(r2.parser.failed, false, r2.events.join('\n'));
  t.equal(r2.stanzas.length, 2);
});

t.test('defaults', async (t) => {
  t.same(DEFAULT_XML_LIMITS, { maxStanzaBytes: 262144, maxDepth: 64, maxAttributes: 64, maxTokenBytes: 131072 });
});
