// The plugin system on a real server: boot checks with clear errors, IQ handlers that return
// their replies, HTTP handlers on the shared listener, and unloading that undoes everything.
import xml from '@xmpp/xml';
import t from 'tap';
import { StanzaError } from '../../lib/errors.js';
import { s } from '../../lib/config/schema.js';
import { HostContext } from '../../lib/plugin/host.js';
import { loadOne } from '../../lib/plugin/loader.js';
import { definePlugin } from '../../lib/plugin/types.js';
import { silentLogger } from '../../lib/log.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestServer } from '../helpers/server.js';

const hello = definePlugin({
  name: 'hello',
  requires: ['disco'],
  options: s.object({ greeting: s.string({ default: 'hello', doc: 'what to say' }) }),
  setup(ctx) {
    ctx.feature('urn:example:hello');
    ctx.iq.get('urn:example:hello', 'query', () => xml('query', { xmlns: 'urn:example:hello' }, ctx.options.greeting));
    ctx.iq.get('urn:example:hello', 'refuse', () => {
      throw new StanzaError('forbidden', 'not for you');
    });
    ctx.iq.get('urn:example:hello', 'crash', () => {
      throw new Error('bug');
    });
    ctx.http('/hello/', (req, res, h) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`${ctx.options.greeting} ${h.path} ${req.method}`);
    });
  },
});

t.test('a plugin answers IQs, errors map to stanza errors, HTTP is mounted', async (t) => {
  const srv = await startTestServer({ plugins: [hello], modules: '  disco: {}\n  hello:\n    greeting: bonjour' });
  t.teardown(() => srv.close());
  await srv.register('alice', 'pw');
  const c = await RawClient.login(srv.c2sPort, 'alice', 'pw');
  c.send("<iq to='localhost' type='get' id='h1'><query xmlns='urn:example:hello'/></iq>");
  t.equal((await c.nextNamed('iq', 'h1')).getChildText('query'), 'bonjour');
  c.send("<iq to='localhost' type='get' id='h2'><refuse xmlns='urn:example:hello'/></iq>");
  const refused = (await c.nextNamed('iq', 'h2')).getChild('error')!;
  t.equal(refused.attrs.type, 'auth');
  t.ok(refused.getChild('forbidden'));
  c.send("<iq to='localhost' type='get' id='h3'><crash xmlns='urn:example:hello'/></iq>");
  t.ok((await c.nextNamed('iq', 'h3')).getChild('error')?.getChild('internal-server-error'));
  c.send("<iq to='localhost' type='get' id='h4'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
  const features = (await c.nextNamed('iq', 'h4')).getChild('query')!.getChildren('feature').map((f) => f.attrs.var);
  t.ok(features.includes('urn:example:hello'));
  c.end();
  const res = await fetch(`http://127.0.0.1:${srv.httpPort}/hello/world?x=1`);
  t.equal(res.status, 200);
  t.equal(await res.text(), 'bonjour /world GET');
  t.equal((await fetch(`http://127.0.0.1:${srv.httpPort}/nothing-here`)).status, 404);
});

t.test('boot errors name the problem and the place', async (t) => {
  await t.rejects(startTestServer({ modules: '  disco: {}\n  no_such_module: {}' }),
    { code: 'PLUGIN_UNKNOWN', message: /parley\.yml:\d+:\d+: modules\.no_such_module: unknown module 'no_such_module'/ });
  await t.rejects(startTestServer({ plugins: [hello], modules: '  hello: {}' }),
    { code: 'PLUGIN_MISSING_DEPENDENCY', message: /module 'hello' requires module 'disco'/ });
  await t.rejects(startTestServer({ plugins: [hello], modules: '  disco: {}\n  hello:\n    greeting: 5' }),
    { code: 'CONFIG_INVALID', message: /parley\.yml:\d+:\d+: modules\.hello\.greeting/ });
  await t.rejects(startTestServer({ plugins: [hello], modules: '  disco: {}\n  hello:\n    grreting: x' }),
    { code: 'CONFIG_INVALID', message: /grreting/ });
  await t.rejects(startTestServer({ modules: '  disco: {}\n  ping:\n    bogus: 1' }),
    { code: 'CONFIG_INVALID', message: /parley\.yml:\d+:\d+: modules\.ping: module 'ping' takes no options/ });
  const a = definePlugin({ name: 'cyc_a', requires: ['cyc_b'], setup() {} });
  const b = definePlugin({ name: 'cyc_b', requires: ['cyc_a'], setup() {} });
  await t.rejects(startTestServer({ plugins: [a, b], modules: '  cyc_a: {}\n  cyc_b: {}' }), { code: 'PLUGIN_CYCLE' });
  const broken = definePlugin({ name: 'broken', setup() { throw new Error('cannot start'); } });
  await t.rejects(startTestServer({ plugins: [broken], modules: '  broken: {}' }),
    { code: 'PLUGIN_SETUP', message: /module 'broken' failed to start on localhost: cannot start/ });
});

t.test('unloading undoes every registration, and a failing setup undoes its partial work', async (t) => {
  const host = new HostContext('example.test', silentLogger);
  const mounted: string[] = [];
  const fakeHttp = { mount: (p: string) => { mounted.push(p); return () => mounted.splice(mounted.indexOf(p), 1); } };
  const deps = { server: {} as never, host, http: fakeHttp as never, log: silentLogger };
  const p = definePlugin({
    name: 'p',
    setup(ctx) {
      ctx.feature('urn:x');
      ctx.feature('urn:y', 'account');
      ctx.identity({ category: 'c', type: 't' });
      ctx.hook('message/bare', () => undefined);
      ctx.iq.get('urn:x', 'q', () => undefined);
      ctx.provide('svc', 1);
      ctx.http('/p/', () => undefined);
      ctx.c2s.element('urn:x', 'e', () => undefined);
      ctx.every(1000, () => undefined);
    },
  });
  const loaded = await loadOne(host, p, undefined, deps);
  t.ok(host.features.has('urn:x') && host.accountFeatures.has('urn:y') && host.hooks.has('message/bare'));
  t.same(mounted, ['/p/']);
  await loaded.unload();
  t.notOk(host.features.has('urn:x'));
  t.notOk(host.accountFeatures.has('urn:y'));
  t.same(host.identities.values(), []);
  t.notOk(host.hooks.has('message/bare'));
  t.notOk(host.hooks.has('iq-get/host/urn:x:q'));
  t.notOk(host.services.has('svc'));
  t.same(mounted, []);
  t.equal(host.elementHandlers.size, 0);
  t.equal(host.plugins.size, 0);

  const half = definePlugin({
    name: 'half',
    setup(ctx) {
      ctx.feature('urn:half');
      throw new Error('boom');
    },
  });
  await t.rejects(loadOne(host, half, undefined, deps), { code: 'PLUGIN_SETUP' });
  t.notOk(host.features.has('urn:half'), 'partial registrations undone');
});

t.test('a plugin serves a whole domain as a component', async (t) => {
  const echo = definePlugin({
    name: 'echo',
    setup(ctx) {
      ctx.component(`echo.${ctx.host}`, async ({ stanza, from, to }) => {
        if (stanza.name === 'iq' && stanza.attrs.type === 'get') throw new StanzaError('feature-not-implemented');
        if (stanza.name !== 'message') return;
        await ctx.route(xml('message', { from: to.full, to: from.full, type: 'chat' }, xml('body', {}, `echo: ${stanza.getChildText('body')}`)));
      });
    },
  });
  const srv = await startTestServer({ plugins: [echo], modules: '  echo: {}' });
  t.teardown(() => srv.close());
  await srv.register('alice', 'pw');
  const c = await RawClient.login(srv.c2sPort, 'alice', 'pw', { resource: 'r' });
  c.send("<message to='room@echo.localhost/nick' type='chat'><body>hi</body></message>");
  const reply = await c.nextNamed('message');
  t.equal(reply.attrs.from, 'room@echo.localhost/nick');
  t.equal(reply.getChildText('body'), 'echo: hi');
  c.send("<iq to='echo.localhost' type='get' id='e1'><query xmlns='urn:x'/></iq>");
  t.ok((await c.nextNamed('iq', 'e1')).getChild('error')?.getChild('feature-not-implemented'), 'StanzaError bounces');
  c.end();

  const clash = definePlugin({ name: 'clash', setup(ctx) { ctx.component('localhost', () => undefined); } });
  await t.rejects(startTestServer({ plugins: [clash], modules: '  clash: {}' }), { code: 'PLUGIN_SETUP', message: /already served/ });
});
