// Hostile XML on a live server: each violation gets its stream error and a close, the process
// survives, and another conversation goes on undisturbed meanwhile.
import t, { type Test } from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({
  yaml: ['limits:', '  max_stanza_size: 64KiB', '  max_xml_depth: 32', '  max_attributes: 16', '  max_token_size: 32KiB'].join('\n'),
});
t.teardown(() => srv.close());
await srv.register('alice', 'pw');
await srv.register('bob', 'pw');
await srv.register('mallory', 'pw');

const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'a' });
const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'b' });
t.teardown(() => {
  alice.destroy();
  bob.destroy();
});
let counter = 0;

/** Proves the bystanders still chat, both ways. */
async function stillChatting(t: Test): Promise<void> {
  const n = ++counter;
  alice.send(`<message to='bob@localhost/b' type='chat'><body>ping ${n}</body></message>`);
  const got = await bob.next((el) => el.name === 'message' && el.getChildText('body') === `ping ${n}`);
  t.equal(got.attrs.from, 'alice@localhost/a', 'bystanders keep chatting');
}

const attacks: Array<[string, string, string]> = [
  ['DOCTYPE', "<!DOCTYPE foo [<!ENTITY x 'y'>]><message/>", 'restricted-xml'],
  ['comment', '<!-- hi --><message/>', 'restricted-xml'],
  ['processing instruction', "<?evil x?><message/>", 'restricted-xml'],
  ['unknown entity', '<message><body>&xxe;</body></message>', 'restricted-xml'],
  ['malformed XML', '<message><body></message>', 'not-well-formed'],
  ['stanza too large', `<message to='bob@localhost'><body>${'a'.repeat(70 * 1024)}</body></message>`, 'policy-violation'],
  ['too deep', '<a>'.repeat(10000), 'policy-violation'],
  ['too many attributes', `<message ${Array.from({ length: 40 }, (_, i) => `a${i}='x'`).join(' ')}/>`, 'policy-violation'],
  ['token too long', `<message to='${'x'.repeat(40 * 1024)}'/>`, 'policy-violation'],
  ['invalid UTF-8', Buffer.from([0x3c, 0x6d, 0x3e, 0xff, 0xfe, 0x3c, 0x2f, 0x6d, 0x3e]).toString('latin1'), 'not-well-formed'],
];

for (const [name, payload, condition] of attacks) {
  t.test(name, async (t) => {
    const m = await RawClient.login(srv.c2sPort, 'mallory', 'pw', { resource: name.replace(/\W/g, '') });
    m.send(name === 'invalid UTF-8' ? Buffer.from(payload, 'latin1') : payload);
    t.equal(await m.streamError(), condition);
    await m.closed();
    await stillChatting(t);
  });
}

t.test('split UTF-8 across TCP writes is reassembled', async (t) => {
  const text = 'héllo 👋 wörld';
  const bytes = Buffer.from(`<message to='bob@localhost/b' type='chat'><body>${text}</body></message>`);
  const cut = bytes.indexOf(Buffer.from('👋')) + 2;
  alice.send(bytes.subarray(0, cut));
  await new Promise((r) => setTimeout(r, 50));
  alice.send(bytes.subarray(cut));
  const got = await bob.next((el) => el.name === 'message' && el.getChildText('body') === text);
  t.ok(got);
});

t.test('whitespace keepalives are ignored', async (t) => {
  for (let i = 0; i < 200; i++) alice.send(' \n\t');
  await stillChatting(t);
});

t.test('the server process is still serving new logins', async (t) => {
  const c = await RawClient.login(srv.c2sPort, 'mallory', 'pw', { resource: 'after' });
  c.send("<iq type='get' id='z' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
  t.equal((await c.nextNamed('iq', 'z')).attrs.type, 'result');
  c.end();
});

t.test('tab, newline and carriage return in attributes and text survive routing', async (t) => {
  alice.send("<message to='bob@localhost/b' type='chat' id='ws'><body>line1&#13;&#10;line2</body><x xmlns='urn:example:ws' v='a&#9;b&#10;c&#13;d'/></message>");
  const got = await bob.next((el) => el.name === 'message' && el.attrs.id === 'ws');
  t.equal(got.getChildText('body'), 'line1\r\nline2');
  t.equal(got.getChild('x', 'urn:example:ws')?.attrs.v, 'a\tb\nc\rd');
});

t.test('stanzas pipelined after <starttls/> are not carried into the TLS stream', async (t) => {
  const c = await RawClient.connect(srv.c2sPort);
  await c.open();
  // A man in the middle appends a stanza to the plaintext STARTTLS request: it must be ignored,
  // and the encrypted stream must start cleanly.
  const features = await c.starttls('localhost', "<iq type='get' id='inj'><ping xmlns='urn:xmpp:ping'/></iq>");
  t.ok(features.getChild('mechanisms'), 'the TLS stream offers SASL as usual');
  t.notOk(c.isClosed);
  c.destroy();
});
