// Interop with a real client library: slixmpp manages its roster and makes a mutual subscription
// with a raw client, relying on roster pushes and presence as RFC 6121 describes them.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Element } from 'ltx';
import t from 'tap';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

// Debian's python3-slixmpp lives beside Debian's python, not necessarily the first python3 on PATH.
const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

const SCRIPT = `
import asyncio, ssl, sys
import slixmpp

port, jid, password, peer = sys.argv[1:5]

class Client(slixmpp.ClientXMPP):
    def __init__(self):
        # PLAIN over STARTTLS: the SASL mechanisms have their own interop test; this one is about rosters.
        super().__init__(jid, password, sasl_mech='PLAIN')
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.result = 1
        self.online = False
        self.add_event_handler('session_start', self.start)
        self.add_event_handler('roster_update', self.check)
        self.add_event_handler('got_online', self.got_online)
        self.add_event_handler('failed_auth', lambda _e: print('AUTH FAILED', flush=True))
        self.add_event_handler('disconnected', lambda _e: print('DISCONNECTED', flush=True))

    async def start(self, _event):
        await self.get_roster()
        print('ROSTER', len(self.client_roster), flush=True)
        self.send_presence()
        await self.update_roster(peer, name='Peer', groups=['Friends'])
        self.send_presence_subscription(pto=peer)

    def got_online(self, pres):
        if pres['from'].bare == peer:
            self.online = True
            self.check(None)

    def check(self, _event):
        if peer not in self.client_roster:
            return
        item = self.client_roster[peer]
        if self.online and item['subscription'] == 'both':
            print('BOTH', item['name'], ','.join(item['groups']), flush=True)
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

const srv = await startTestServer({ modules: '  disco: {}\n  roster: {}\n  presence: {}' });
t.teardown(() => srv.close());
await srv.register('alice', 'pw');
await srv.register('bob', 'pw');

t.test('slixmpp: roster item, subscription handshake both ways, presence', async (t) => {
  const bob = await RawClient.login(srv.c2sPort, 'bob', 'pw', { resource: 'b' });
  const child = new Promise<{ code: number; out: string }>((resolve) => {
    execFile(python, ['-c', SCRIPT, String(srv.c2sPort), 'alice@localhost/slix', 'pw', 'bob@localhost'],
      { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
  });
  const isType = (type: string) => (el: Element): boolean => el.name === 'presence' && el.attrs.type === type;
  const req = await bob.next(isType('subscribe'), 25_000);
  t.equal(req.attrs.from, 'alice@localhost');
  bob.send("<presence to='alice@localhost' type='subscribed'/>");
  bob.send("<presence to='alice@localhost' type='subscribe'/>");
  // slixmpp approves requests from contacts by default.
  await bob.next(isType('subscribed'), 25_000);
  const { code, out } = await child;
  t.equal(code, 0, out);
  t.match(out, 'ROSTER 0');
  t.match(out, 'BOTH Peer Friends');
  bob.end();
});
