// Interop: slixmpp's own XEP-0313 and XEP-0059 support (Debian's python3-slixmpp) reads a user
// archive written by raw clients: the query form, paging forward and backward to the end, and a
// time-range filter.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

// Kept here rather than as a fixture file: it belongs to this test alone.
const SCRIPT = `
import asyncio, datetime, json, ssl, sys
import slixmpp

port, jid, password, peer = sys.argv[1:5]

class Reader(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, password)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for plugin in ('xep_0004', 'xep_0059', 'xep_0297', 'xep_0313'):
            self.register_plugin(plugin)
        self.result = 1
        self.add_event_handler('session_start', self.start)

    async def bodies(self, **kwargs):
        out = []
        async for msg in self['xep_0313'].iterate(with_jid=slixmpp.JID(peer), **kwargs):
            out.append(msg['mam_result']['forwarded']['stanza']['body'])
        return out

    async def start(self, _event):
        try:
            form = await self['xep_0313'].get_fields()
            print('FIELDS ' + json.dumps(sorted(form.get_fields().keys())), flush=True)
            print('FORWARD ' + json.dumps(await self.bodies(rsm={'max': 7})), flush=True)
            print('BACKWARD ' + json.dumps(await self.bodies(rsm={'max': 7}, reverse=True)), flush=True)
            future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
            print('FUTURE ' + json.dumps(await self.bodies(start=future)), flush=True)
            self.result = 0
        except Exception as e:
            print('ERROR ' + repr(e), flush=True)
        finally:
            self.disconnect()

xmpp = Reader()
xmpp.connect(('127.0.0.1', int(port)), force_starttls=True)
loop = asyncio.get_event_loop()
try:
    loop.run_until_complete(asyncio.wait_for(xmpp.disconnected, 25))
except asyncio.TimeoutError:
    print('TIMEOUT', flush=True)
sys.exit(xmpp.result)
`;

const hasSlixmpp = await new Promise<boolean>((resolve) => {
  execFile(python, ['-c', 'import slixmpp.plugins.xep_0313'], (err) => resolve(!err));
});

t.test('slixmpp pages through a user archive', { skip: !hasSlixmpp && 'python3-slixmpp is not installed' }, async (t) => {
  const srv = await startTestServer({ modules: '  disco: {}\n  mam: {}' });
  t.teardown(() => srv.close());
  await srv.register('alice', 'pw');
  await srv.register('bob', 'pw');
  const alice = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'raw' });
  const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'b' });
  const bodies = Array.from({ length: 25 }, (_, i) => `m${i} <&> ü`);
  for (const body of bodies) bob.send(`<message to='alice@localhost' type='chat'><body>${body.replace('<&>', '&lt;&amp;&gt;')}</body></message>`);
  for (let i = 0; i < bodies.length; i++) await alice.next((el) => el.name === 'message' && el.getChildText('body') !== null);
  alice.end();
  bob.end();

  const { code, out } = await new Promise<{ code: number; out: string }>((resolve) => {
    execFile(python, ['-c', SCRIPT, String(srv.c2sPort), 'alice@localhost/slix', 'pw', 'bob@localhost'], { timeout: 40_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
  });
  t.equal(code, 0, out);
  const line = (tag: string): unknown => {
    const found = out.split('\n').find((l) => l.startsWith(`${tag} `));
    return found === undefined ? undefined : JSON.parse(found.slice(tag.length + 1));
  };
  t.same(line('FIELDS'), ['FORM_TYPE', 'after-id', 'before-id', 'end', 'ids', 'start', 'with'], 'the query form');
  t.same(line('FORWARD'), bodies, 'forward paging: every message once, in order');
  t.same(line('BACKWARD'), [...bodies].reverse(), 'backward paging: every message once, newest first');
  t.same(line('FUTURE'), [], 'a start in the future matches nothing');
});
