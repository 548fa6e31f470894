// The `components:` configuration: validation, boot conflicts and reload.
import { writeFileSync } from 'node:fs';
import t from 'tap';
import { parseConfig } from '../../lib/config/load.js';
import { testConfigText, startTestServer } from '../helpers/server.js';
import { connectComponent, openComponentStream } from '../helpers/component-client.js';

const LISTEN = ['  - port: 0', '    ip: 127.0.0.1', '    module: component'].join('\n');

t.test('config errors are one line naming the option', async (t) => {
  const parse = (yaml: string) => () => parseConfig(`hosts: [localhost]\n${yaml}`, 'parley.yml');
  t.throws(parse('components:\n  localhost: { secret: x }'), /components\.localhost: 'localhost' is one of hosts/);
  t.throws(parse('components:\n  gw.test: {}'), /components\.gw\.test\.secret: missing/);
  t.throws(parse("components:\n  gw.test: { secret: '' }"), /components\.gw\.test\.secret/);
  t.throws(parse('components:\n  "not a domain": { secret: x }'), /components\.not a domain/);
  t.throws(parse('components:\n  gw.test: { secret: x, colour: red }'), /unknown key 'colour'/);
  t.throws(parse('limits:\n  component_handshake_timeout: 30'), /limits\.component_handshake_timeout/);
  const ok = parseConfig('components:\n  GW.Test: { secret: x }', 'parley.yml').core.components;
  t.same(ok, { 'gw.test': { secret: 'x', stanza_rate: 1000 } }, 'domains are normalised; defaults filled in');
  for (const message of collectMessages([parse('components:\n  localhost: { secret: x }')])) {
    t.notMatch(message, /\n/, 'one line');
  }
});

t.test('a component domain that a module already serves stops the boot', async (t) => {
  await t.rejects(startTestServer({
    modules: '  disco: {}\n  muc: {}',
    yaml: 'components:\n  conference.localhost: { secret: x }',
  }), /components\.conference\.localhost: .*already served/);
});

t.test('reload: added, removed and changed components', async (t) => {
  const o = { listen: LISTEN, yaml: 'components:\n  gw.test: { secret: one }\n  old.test: { secret: old }' };
  const srv = await startTestServer(o);
  t.teardown(() => srv.close());
  const port = srv.ports('component')[0]!;
  const old = await connectComponent(port, 'old.test', 'old');
  t.equal(old.answer, 'handshake');
  const gw = await connectComponent(port, 'gw.test', 'one');
  t.equal(gw.answer, 'handshake');

  writeFileSync(srv.configFile, testConfigText(srv.dataDir, { ...o, yaml: 'components:\n  gw.test: { secret: two }\n  new.test: { secret: new }' }));
  const summary = await srv.server.reload();
  t.match(summary, /component old\.test removed/);
  t.match(summary, /component gw\.test changed/);
  t.match(summary, /component new\.test added/);

  t.equal(await old.client.streamError(), 'host-gone', "a removed component's stream is closed");
  await old.client.closed();
  const retry = await openComponentStream(port, 'old.test');
  t.equal(await retry.client.streamError(), 'host-unknown', 'and it cannot connect again');

  // The connected stream of a changed component stays; the new secret counts for new streams.
  gw.client.send("<iq type='get' id='p1' from='gw.test' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
  t.equal((await gw.client.nextNamed('iq', 'p1')).attrs.type, 'result', 'the existing stream goes on');
  gw.client.end();
  await gw.client.closed();
  t.equal((await connectComponent(port, 'gw.test', 'one')).answer, 'not-authorized', 'the old secret no longer works');
  const again = await connectComponent(port, 'gw.test', 'two');
  t.equal(again.answer, 'handshake', 'the new secret works');
  again.client.end();

  const added = await connectComponent(port, 'new.test', 'new');
  t.equal(added.answer, 'handshake', 'an added component can connect');
  added.client.end();
  t.match(await srv.server.stats(), /component new\.test\tconnected=/);
  t.notMatch(await srv.server.stats(), /component old\.test/);
});

function collectMessages(fns: Array<() => unknown>): string[] {
  const out: string[] = [];
  for (const fn of fns) {
    try {
      fn();
    } catch (err) {
      out.push((err as Error).message);
    }
  }
  return out;
}
