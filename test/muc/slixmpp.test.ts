// Interop: slixmpp's own XEP-0045 plugin (Debian's python3-slixmpp) joins a room the way a real
// client does (join_muc_wait, which waits for the self-presence and history), talks in it and
// reads the room's configuration form with its own form parser.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import t from 'tap';
import { createInstant, groupchatBody, login, presenceFrom, SERVICE, startMucServer } from '../helpers/muc-client.js';

const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

const SCRIPT = `
import asyncio, ssl, sys
import slixmpp

port, jid, room = sys.argv[1:4]

class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid, 'pw')
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin('xep_0045')
        self.register_plugin('xep_0004')
        self.result = 1
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('groupchat_message', self.groupchat)

    async def start(self, _event):
        self.send_presence()
        muc = self.plugin['xep_0045']
        pres, subject, occupants, history = await muc.join_muc_wait(room, 'Slix', maxstanzas=0, timeout=10)
        print('JOINED %s occupants=%d history=%d' % (pres['muc']['role'], len(occupants), len(history)), flush=True)
        self.send_message(mto=room, mbody='hello from slixmpp', mtype='groupchat')

    def groupchat(self, msg):
        if msg['mucnick'] != 'Slix' and msg['body'] == 'welcome':
            print('GOT ' + msg['body'] + ' FROM ' + msg['mucnick'], flush=True)
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

const srv = await startMucServer();
t.teardown(() => srv.close());

t.test('slixmpp joins, speaks and hears in a room', async (t) => {
  const alice = await login(srv, 'alice');
  const room = `interop@${SERVICE}`;
  await createInstant(alice, room, 'Alice');
  const child = new Promise<{ code: number; out: string }>((resolve) => {
    execFile(python, ['-c', SCRIPT, String(srv.c2sPort), 'bob@localhost/slix', room], { timeout: 30_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
  });
  await alice.next(presenceFrom(`${room}/Slix`), 25_000);
  const said = await alice.next(groupchatBody(room, 'hello from slixmpp'), 25_000);
  t.equal(said.attrs.from, `${room}/Slix`);
  alice.send(`<message to='${room}' type='groupchat'><body>welcome</body></message>`);
  const { code, out } = await child;
  t.equal(code, 0, out);
  t.match(out, 'JOINED participant occupants=2 history=0', 'the presence of both occupants, no history (maxstanzas=0), subject');
  t.match(out, 'GOT welcome FROM Alice');
  t.ok(await alice.next(presenceFrom(`${room}/Slix`, 'unavailable'), 10_000), 'slixmpp left when it disconnected');
  alice.end();
});
