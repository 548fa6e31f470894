"""An external component written with slixmpp (XEP-0114) that echoes every message it gets.

Usage: slix_echo_component.py PORT DOMAIN SECRET
Prints 'READY' once the handshake succeeded, 'GOT <from> <body>' per message, and answers each
with 'echo: <body>' from the JID it was sent to. A message whose body is 'quit' ends it (exit 0).
Exits 1 when the stream ends otherwise, or after 20 seconds.
"""
import asyncio
import sys

from slixmpp.componentxmpp import ComponentXMPP

port, domain, secret = sys.argv[1:4]


class Echo(ComponentXMPP):
    def __init__(self):
        super().__init__(domain, secret, '127.0.0.1', int(port))
        self.result = 1
        self.add_event_handler('session_start', self.ready)
        self.add_event_handler('message', self.message)

    def ready(self, _event):
        print('READY', flush=True)

    def message(self, msg):
        body = msg['body']
        print('GOT %s %s' % (msg['from'], body), flush=True)
        if body == 'quit':
            self.result = 0
            self.disconnect()
            return
        self.send_message(mto=msg['from'], mfrom=msg['to'], mbody='echo: ' + body, mtype=msg['type'])


xmpp = Echo()
xmpp.connect()
loop = asyncio.get_event_loop()
try:
    loop.run_until_complete(asyncio.wait_for(xmpp.disconnected, 20))
except asyncio.TimeoutError:
    print('TIMEOUT', flush=True)
sys.exit(xmpp.result)
