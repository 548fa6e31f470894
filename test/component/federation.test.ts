// An external component's domain is routable from federation: a component connected to server A
// (gw.a.test) sends to a user of server B through s2s, and B's user answers it. The s2s stream
// for the component's domain authenticates with dialback, with A as its authoritative server.
import t from 'tap';
import { connectComponent } from '../helpers/component-client.js';
import { RawClient } from '../helpers/raw-client.js';
import { IM_MODULES, startPair } from '../helpers/s2s-pair.js';

const COMPONENT = '  - port: 0\n    ip: 127.0.0.1\n    module: component';
const pair = await startPair({
  bDomains: ['conference.b.test'],
  aYaml: `components:\n  gw.a.test:\n    secret: federated-component-secret`,
  modules: IM_MODULES,
  aListen: COMPONENT,
  bRoutesToA: ['gw.a.test'],
});
t.teardown(() => pair.close());
const { a, b } = pair;
await b.register('bob', 'pw');

t.test('a component on A and a user on B talk through s2s', async (t) => {
  const component = await connectComponent(a.ports('component')[0]!, 'gw.a.test', 'federated-component-secret');
  t.teardown(() => component.client.destroy());
  t.equal(component.answer, 'handshake');
  const bob = await RawClient.login(b.c2sPort, 'bob', 'pw', { host: 'b.test', resource: 'r1', presence: false });
  t.teardown(() => bob.destroy());

  component.client.send("<message from='echo@gw.a.test' to='bob@b.test/r1' type='chat' id='c1'><body>from the gateway</body></message>");
  const got = await bob.next((el) => el.name === 'message' && el.attrs.id === 'c1');
  t.equal(got.attrs.from, 'echo@gw.a.test');
  t.equal(got.getChildText('body'), 'from the gateway');

  bob.send("<message to='echo@gw.a.test' type='chat' id='c2'><body>back to the gateway</body></message>");
  const back = await component.client.next((el) => el.name === 'message' && el.attrs.id === 'c2');
  t.equal(back.attrs.from, 'bob@b.test/r1');
  t.equal(back.attrs.to, 'echo@gw.a.test');
  t.equal(back.getChildText('body'), 'back to the gateway');
  t.match(await a.server.stats(), /s2s out\tgw\.a\.test -> b\.test\tstate=ready/);
});
