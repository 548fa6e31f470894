// A client's message counts in its stream management `h` only once what the server stored for it
// is committed (StanzaEvent.durable), and the session goes on with its next messages meanwhile:
// a stand-in storage plugin hands the session commits the test settles by hand.
import type { Element } from 'ltx';
import t from 'tap';
import { definePlugin, type StanzaEvent } from '../../lib/plugin/types.js';
import { startTestServer } from '../helpers/server.js';
import { NS_SM, SmClient } from '../fixtures/nl-client.js';

interface Pending {
  body: string;
  commit: () => void;
  fail: (err: Error) => void;
}

/** Messages seen by the stand-in store, each with its commit still open, in arrival order. */
const seen: Pending[] = [];
let waiting: Array<() => void> = [];

const store = definePlugin({
  name: 'commit_probe',
  setup(ctx) {
    ctx.hook('pre-message/bare', (ev: StanzaEvent): undefined => {
      const body = ev.stanza.getChildText('body');
      if (body === null || !ev.durable) return undefined;
      let commit!: () => void;
      let fail!: (err: Error) => void;
      ev.durable(new Promise<void>((resolve, reject) => {
        commit = resolve;
        fail = reject;
      }));
      seen.push({ body, commit, fail });
      for (const wake of waiting.splice(0)) wake();
      return undefined;
    });
  },
});

const srv = await startTestServer({
  plugins: [store],
  modules: ['  commit_probe: {}', '  smacks:', '    request_every: 100', '    ack_timeout: 0'].join('\n'),
});
t.teardown(() => srv.close());
await srv.register('sender', 'pw');
await srv.register('other', 'pw');

/** Resolves once the stand-in store has seen `n` messages in all. */
async function seenCount(n: number): Promise<void> {
  while (seen.length < n) await new Promise<void>((resolve) => waiting.push(resolve));
}

const chat = (body: string) => `<message to='other@localhost' type='chat'><body>${body}</body></message>`;
const isAck = (el: Element) => el.name === 'a' && el.attrs.xmlns === NS_SM;

t.test('h waits for the commit, and later messages are handled meanwhile', async (t) => {
  seen.length = 0;
  const c = await SmClient.login(srv.c2sPort, 'sender', 'pw', { sm: true, presence: false });
  t.teardown(() => c.end());
  c.send(chat('one'));
  c.send(chat('two'));
  c.send(`<r xmlns='${NS_SM}'/>`);
  // Both reach the store although the first one's commit is still open: the session pipelines.
  await seenCount(2);
  t.same(seen.map((p) => p.body), ['one', 'two']);
  t.ok(await c.nothing(isAck, 300), 'no <a/> yet');
  // The second commit alone does not let the count pass the first, uncommitted message.
  seen[1]!.commit();
  t.ok(await c.nothing(isAck, 300), 'no <a/> yet');
  seen[0]!.commit();
  const a = await c.next(isAck);
  t.equal(a.attrs.h, '2', 'both counted once both committed');
});

t.test('without pending commits the answer comes at once', async (t) => {
  seen.length = 0;
  const c = await SmClient.login(srv.c2sPort, 'sender', 'pw', { sm: true, presence: false });
  t.teardown(() => c.end());
  c.send(`<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
  t.equal(await c.request(), 1);
});

t.test('a failed commit ends the stream and is never counted', async (t) => {
  seen.length = 0;
  const c = await SmClient.login(srv.c2sPort, 'sender', 'pw', { sm: true, presence: false });
  c.send(chat('lost'));
  c.send(chat('after'));
  await seenCount(2);
  c.send(`<r xmlns='${NS_SM}'/>`);
  seen[1]!.commit();
  seen[0]!.fail(new Error('disk full'));
  t.equal(await c.streamError(), 'internal-server-error');
  t.notOk(c.log.some(isAck), 'no <a/> claimed either message');
  await c.closed();
});
