// XEP-0156 HTTP lookup: host-meta (XRD) and host-meta.json, per host, with CORS; the mount
// survives the plugin being unloaded on the host that made it.
import { readFileSync, writeFileSync } from 'node:fs';
import { parse as parseXml } from 'ltx';
import t from 'tap';
import { startTestServer } from '../helpers/server.js';
import { request } from '../fixtures/upload-server.js';

const WS = 'urn:xmpp:alt-connections:websocket';
const BOSH = 'urn:xmpp:alt-connections:xbosh';

const srv = await startTestServer({
  hosts: ['localhost', 'example.test'],
  modules: '  disco: {}\n  host_meta: {}',
  yaml: ['host_config:', '  example.test:', '    modules:', '      host_meta:', "        websocket_url: 'wss://chat.example.test/ws'", "        bosh_url: ''"].join('\n'),
});
t.teardown(() => srv.close());
const base = `http://127.0.0.1:${srv.httpPort}`;

const get = (path: string, host: string, method = 'GET') => request(method, base + path, { headers: { Host: host } });

function xrdLinks(body: Buffer): Array<{ rel: string; href: string }> {
  const doc = parseXml(body.toString('utf8'));
  if (doc.name !== 'XRD' || doc.attrs.xmlns !== 'http://docs.oasis-open.org/ns/xri/xrd-1.0') throw new Error(`not an XRD: ${body}`);
  return doc.getChildren('Link').map((l) => ({ rel: l.attrs.rel as string, href: l.attrs.href as string }));
}

t.test('host-meta (XRD) and host-meta.json with the default endpoints', async (t) => {
  const xmlRes = await get('/.well-known/host-meta', 'localhost');
  t.equal(xmlRes.status, 200);
  t.match(xmlRes.headers['content-type'], /^application\/xrd\+xml/);
  t.equal(xmlRes.headers['access-control-allow-origin'], '*');
  const expected = [
    { rel: WS, href: 'wss://localhost:5443/xmpp-websocket' },
    { rel: BOSH, href: 'https://localhost:5443/http-bind' },
  ];
  t.same(xrdLinks(xmlRes.body), expected);

  const jsonRes = await get('/.well-known/host-meta.json', 'localhost:5443');
  t.equal(jsonRes.status, 200);
  t.match(jsonRes.headers['content-type'], /^application\/json/);
  t.equal(jsonRes.headers['access-control-allow-origin'], '*');
  t.same(JSON.parse(jsonRes.body.toString()), { links: expected });

  const head = await get('/.well-known/host-meta', 'localhost', 'HEAD');
  t.equal(head.status, 200);
  t.equal(head.body.length, 0);
});

t.test('chosen by the Host header; options per host', async (t) => {
  const res = await get('/.well-known/host-meta.json', 'EXAMPLE.test');
  t.same(JSON.parse(res.body.toString()), { links: [{ rel: WS, href: 'wss://chat.example.test/ws' }] }, 'empty bosh_url: no BOSH link');
  const xml = await get('/.well-known/host-meta', 'example.test');
  t.same(xrdLinks(xml.body), [{ rel: WS, href: 'wss://chat.example.test/ws' }]);
  t.equal((await get('/.well-known/host-meta', '127.0.0.1')).status, 404, 'two hosts: an unknown name gets nothing');
});

t.test('CORS preflight, other methods and paths', async (t) => {
  const pre = await request('OPTIONS', `${base}/.well-known/host-meta.json`, {
    headers: { Host: 'localhost', Origin: 'https://web.example', 'Access-Control-Request-Method': 'GET' },
  });
  t.equal(pre.status, 204);
  t.equal(pre.headers['access-control-allow-origin'], '*');
  t.match(pre.headers['access-control-allow-methods'], /GET/);
  t.equal((await get('/.well-known/host-meta', 'localhost', 'POST')).status, 405);
  t.equal((await get('/.well-known/host-meta/x', 'localhost')).status, 404);
  t.equal((await get('/.well-known/host-meta.jsonx', 'localhost')).status, 404);
});

t.test('the paths stay mounted when the host that mounted them drops host_meta', async (t) => {
  const original = readFileSync(srv.configFile, 'utf8');
  // localhost loaded first and holds the mount; disable host_meta there.
  writeFileSync(srv.configFile, original.replace('host_config:\n', 'host_config:\n  localhost:\n    modules:\n      host_meta: false\n'));
  await srv.server.reload();
  t.equal((await get('/.well-known/host-meta.json', 'example.test')).status, 200, 'example.test took the mount over');
  t.equal((await get('/.well-known/host-meta.json', 'localhost')).status, 404, 'a host without host_meta gets nothing');
  t.equal((await get('/.well-known/host-meta.json', '127.0.0.1')).status, 200, 'one host left: other names get its links');

  writeFileSync(srv.configFile, original);
  await srv.server.reload();
  t.equal((await get('/.well-known/host-meta.json', 'localhost')).status, 200, 'enabled again');
  t.equal((await get('/.well-known/host-meta.json', 'example.test')).status, 200);
});
