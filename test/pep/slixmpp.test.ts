// PEP with a real client library from Debian: slixmpp announces +notify through its own XEP-0115
// capabilities (the server asks it and verifies the hash), receives the last published item of a
// contact's node, publishes with publish-options and meets precondition-not-met as XEP-0060
// defines it.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Element } from 'ltx';
import t from 'tap';
import type { RosterApi } from '../../plugins/roster/api.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

const SCRIPT = String.raw`
import asyncio, ssl, sys
import xml.etree.ElementTree as ET
import slixmpp
from slixmpp.exceptions import IqError

port, jid, password, node, own = sys.argv[1:6]
OPTIONS = 'http://jabber.org/protocol/pubsub#publish-options'

class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ('xep_0030', 'xep_0004', 'xep_0060', 'xep_0115', 'xep_0163'):
            self.register_plugin(p)
        self.result = 1
        self.got_event = False
        self.done = False
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('pubsub_publish', self.published)

    def options(self, access):
        form = self['xep_0004'].make_form(ftype='submit')
        form.add_field(var='FORM_TYPE', ftype='hidden', value=OPTIONS)
        form.add_field(var='pubsub#access_model', value=access)
        return form

    async def start(self, _event):
        self['xep_0163'].add_interest(node)
        await self['xep_0115'].update_caps(None, broadcast=False)
        self.send_presence()
        payload = ET.fromstring("<entry xmlns='urn:xmpp:test:slix'>from slixmpp</entry>")
        await self['xep_0060'].publish(self.boundjid.bare, own, id='one', payload=payload, options=self.options('open'))
        print('PUBLISHED', flush=True)
        try:
            await self['xep_0060'].publish(self.boundjid.bare, own, id='two', payload=payload, options=self.options('whitelist'))
            print('NO CONFLICT', flush=True)
        except IqError as e:
            specific = [c.tag for c in e.iq['error'].xml if c.tag.startswith('{http://jabber.org/protocol/pubsub#errors}')]
            print('CONFLICT %s %s' % (e.condition, ' '.join(specific)), flush=True)
        self.done = True
        self.finish()

    def published(self, msg):
        items = msg['pubsub_event']['items']
        item = items['item']
        print('EVENT %s %s %s %s' % (msg['from'], items['node'], item['id'], item['payload'].text), flush=True)
        self.got_event = True
        self.finish()

    def finish(self):
        if self.done and self.got_event:
            self.result = 0
            self.disconnect()

xmpp = Client()
xmpp.connect(('127.0.0.1', int(port)), force_starttls=True)
loop = asyncio.get_event_loop()
try:
    loop.run_until_complete(asyncio.wait_for(xmpp.disconnected, 20))
except asyncio.TimeoutError:
    print('TIMEOUT', flush=True)
sys.exit(xmpp.result)
`;

const srv = await startTestServer({
  modules: ['  disco: {}', '  caps: {}', '  roster: {}', '  presence: {}', '  pep: {}'].join('\n'),
});
const dir = mkdtempSync(path.join(tmpdir(), 'parley-pep-slix-'));
t.teardown(async () => {
  await srv.close();
  rmSync(dir, { recursive: true, force: true });
});
await srv.register('alice', 'pw');
await srv.register('bob', 'pw');
const roster = srv.server.host('localhost')!.services.get('roster') as RosterApi;
await roster.upsert('alice@localhost', { jid: 'bob@localhost', groups: [], subscription: 'both' });
await roster.upsert('bob@localhost', { jid: 'alice@localhost', groups: [], subscription: 'both' });
const script = path.join(dir, 'slix_pep.py');
writeFileSync(script, SCRIPT);

let counter = 0;
async function iq(c: RawClient, payload: string, type = 'set', to?: string): Promise<Element> {
  const id = `s${++counter}`;
  c.send(`<iq type='${type}' id='${id}'${to ? ` to='${to}'` : ''}>${payload}</iq>`);
  return c.nextNamed('iq', id);
}

t.test('slixmpp gets the last item through its caps, and publishes with options', async (t) => {
  const node = 'urn:xmpp:test:mood';
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'a' });
  const r = await iq(alice, `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${node}'><item id='m1'>`
    + `<mood xmlns='${node}'>happy</mood></item></publish></pubsub>`);
  t.equal(r.attrs.type, 'result');
  const out = await new Promise<{ code: number; text: string }>((resolve) => {
    let text = '';
    const child = spawn(python, [script, String(srv.c2sPort), 'bob@localhost/slix', 'pw', node, 'urn:xmpp:test:slix-own']);
    child.stdout.on('data', (d: Buffer) => { text += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { text += d.toString(); });
    child.on('close', (code) => resolve({ code: code ?? 1, text }));
  });
  t.equal(out.code, 0, out.text);
  t.match(out.text, `EVENT alice@localhost ${node} m1 happy`, 'the last item, by the +notify in its caps');
  t.match(out.text, 'PUBLISHED');
  t.match(out.text, 'CONFLICT conflict {http://jabber.org/protocol/pubsub#errors}precondition-not-met');
  const cached = await srv.server.storage.map('pep_caps').keys('localhost');
  t.equal(cached.length, 1, "slixmpp's capability hash was verified and cached");
  const items = await iq(alice, "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:test:slix-own'/></pubsub>", 'get', 'bob@localhost');
  t.equal(items.getChild('pubsub')?.getChild('items')?.getChild('item')?.getChildText('entry'), 'from slixmpp');
  alice.end();
});
