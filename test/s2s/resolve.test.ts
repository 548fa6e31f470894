// Target selection for outgoing streams (RFC 2782, XEP-0368) with an injected resolver, and the
// remote presence bookkeeping (what is withdrawn when streams die, what is probed afterwards).
import t from 'tap';
import { Jid } from '../../lib/jid.js';
import { RemotePresence } from '../../lib/s2s/remote-presence.js';
import { orderSrv, resolveTargets, type SrvRecord, type SrvResolver } from '../../lib/s2s/resolve.js';

function resolver(answers: Record<string, SrvRecord[]>): SrvResolver & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    async resolveSrv(name) {
      asked.push(name);
      const records = answers[name];
      if (!records) throw Object.assign(new Error('no records'), { code: 'ENOTFOUND' });
      return records;
    },
  };
}

const rec = (name: string, priority: number, weight: number, port = 5269): SrvRecord => ({ name, port, priority, weight });

t.test('RFC 2782: lower priority first; weights pick within a priority', async (t) => {
  const records = [rec('c', 20, 0), rec('a1', 10, 60), rec('a2', 10, 40), rec('b', 10, 0)];
  // random() = 0: the running sum reaches 0 at the first record, and zero-weight ones come first.
  t.same(orderSrv(records, () => 0).map((r) => r.name), ['b', 'a1', 'a2', 'c']);
  // random() close to 1 picks the record whose weight covers the top of the range.
  t.same(orderSrv(records, () => 0.99).map((r) => r.name), ['a2', 'a1', 'b', 'c']);
  // Over many draws, a weight-60 record comes first about 60% of the time.
  let first = 0;
  let seed = 1;
  const lcg = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 2000; i++) if (orderSrv([rec('x', 1, 60), rec('y', 1, 40)], lcg)[0]!.name === 'x') first++;
  t.ok(first > 1000 && first < 1400, `weight 60 first in ${first} of 2000`);
});

t.test('Direct TLS and STARTTLS records merge by priority, Direct TLS first on ties', async (t) => {
  const r = resolver({
    '_xmpps-server._tcp.example.org': [rec('tls.example.org', 10, 0, 5270)],
    '_xmpp-server._tcp.example.org': [rec('plain.example.org', 5, 0), rec('tie.example.org', 10, 0)],
  });
  const targets = await resolveTargets('example.org', { routes: {}, resolver: r, random: () => 0 });
  t.same(targets, [
    { host: 'plain.example.org', port: 5269, tls: 'starttls' },
    { host: 'tls.example.org', port: 5270, tls: 'direct' },
    { host: 'tie.example.org', port: 5269, tls: 'starttls' },
  ]);
  t.same(r.asked.sort(), ['_xmpp-server._tcp.example.org', '_xmpps-server._tcp.example.org']);
});

t.test('no SRV records: the domain itself on 5269; "." means no service', async (t) => {
  t.same(await resolveTargets('bare.example', { routes: {}, resolver: resolver({}) }), [{ host: 'bare.example', port: 5269, tls: 'starttls' }]);
  const none = resolver({ '_xmpp-server._tcp.none.example': [rec('.', 0, 0)] });
  t.same(await resolveTargets('none.example', { routes: {}, resolver: none }), []);
});

t.test('a static route wins over DNS', async (t) => {
  const r = resolver({ '_xmpp-server._tcp.routed.example': [rec('dns.example', 0, 0)] });
  const targets = await resolveTargets('routed.example', { routes: { 'routed.example': { host: '192.0.2.1', port: 5999, tls: 'direct' } }, resolver: r });
  t.same(targets, [{ host: '192.0.2.1', port: 5999, tls: 'direct' }]);
  t.same(r.asked, [], 'DNS was not asked');
});

t.test('remote presence: withdrawn when the domain is lost, probed when it is back', async (t) => {
  const p = new RemotePresence();
  const presence = (attrs: Record<string, string>) => ({ name: 'presence', attrs }) as never;
  p.observe(presence({}), Jid.parse('carol@c.test/x'), Jid.parse('bob@b.test'));
  p.observe(presence({}), Jid.parse('carol@c.test/y'), Jid.parse('bob@b.test/r1'));
  p.observe(presence({ type: 'unavailable' }), Jid.parse('carol@c.test/y'), Jid.parse('bob@b.test'));
  p.observe(presence({}), Jid.parse('dave@d.test/z'), Jid.parse('bob@b.test'));
  t.equal(p.size, 2);
  const lost = p.lose('c.test');
  t.same(lost.map((e) => [e.attrs.from, e.attrs.to, e.attrs.type]), [['carol@c.test/x', 'bob@b.test', 'unavailable']]);
  t.equal(p.size, 1, 'd.test is untouched');
  t.same(p.lose('c.test'), [], 'nothing twice');
  const probes = p.regain('c.test');
  t.same(probes.map((e) => [e.attrs.from, e.attrs.to, e.attrs.type]), [['bob@b.test', 'carol@c.test', 'probe']]);
  t.same(p.regain('c.test'), [], 'probed once');
});
