// The loader: YAML problems (CONFIG_SYNTAX), missing files (CONFIG_NOT_FOUND), invalid values
// (CONFIG_INVALID) with file:line:col, path handling and per-host module merging.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BootError } from '../../lib/errors.js';
import { loadConfig, parseConfig, readYaml, type LoadedConfig } from '../../lib/config/load.js';
import { ConfigError } from '../../lib/config/schema.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/config/${name}`, import.meta.url));

/** The BootError thrown (sync or async) by `fn`; fails the test when there is none. */
async function bootError(tt: Pick<typeof t, 'fail'>, fn: () => unknown): Promise<BootError> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof BootError) return err;
    tt.fail(`expected a BootError, got ${String(err)}`);
    throw err;
  }
  tt.fail('expected a BootError, nothing was thrown');
  throw new Error('no error');
}

t.test('a valid file loads, with absolute paths', async (t) => {
  const file = fixture('valid.yml');
  const config = await loadConfig(file);
  t.equal(config.file, file);
  t.same(config.core.hosts, ['example.com', 'example.net'], 'hosts are prepared domains');
  t.equal(config.core.data_dir, resolve('state'), 'data_dir is resolved against the working directory');
  t.same(config.core.certfiles, [resolve('certs/example.pem')]);
  t.equal(config.core.admin.socket, join(resolve('state'), 'parleyctl.sock'), 'admin socket defaults into data_dir');
  t.equal(config.core.storage.path, 'test.db', 'the embedded file stays relative to data_dir');
  t.same(config.core.listen, [{
    port: 5222, ip: '::', module: 'c2s', tls: false, starttls_required: true, max_connections: 10000, max_connections_per_ip: 100,
  }]);
  t.equal(config.core.limits.max_stanza_size, 256 * 1024, 'limits get their defaults');
});

t.test('relative file names are reported as given; file is absolute', async (t) => {
  const config = parseConfig('hosts: [localhost]\n', 'some/dir/parley.yml');
  t.equal(config.file, resolve('some/dir/parley.yml'));
  const err = await bootError(t, () => parseConfig('hosts: 5\n', 'some/dir/parley.yml'));
  t.equal(err.message, 'some/dir/parley.yml:1:8: hosts: expected list of domain name (at least 1 item), got 5');
});

t.test('an empty file is all defaults', async (t) => {
  const config = parseConfig('', 'empty.yml');
  t.same(config.core.hosts, ['localhost']);
  t.same(config.core.listen.map((l) => [l.port, l.module, l.tls]), [[5222, 'c2s', false], [5443, 'http', true]]);
  t.same(Object.keys(config.core.modules), ['disco', 'ping', 'version', 'time', 'caps', 'uptime', 'roster', 'presence', 'blocking', 'vcard', 'private', 'last', 'carbons', 'csi', 'smacks', 'offline', 'mam', 'push', 'pep', 'muc', 'http_upload', 'host_meta', 'phone', 'register', 'contacts', 'websocket', 'bosh']);
  t.same(config.core.auth.mechanisms, ['SCRAM-SHA-512-PLUS', 'SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-512', 'SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']);
  t.equal(config.core.limits.c2s_idle_timeout, 10 * 60_000);
  const comments = parseConfig('# nothing but a comment\n', 'c.yml');
  t.same(comments.core, config.core);
});

t.test('admin.socket and data_dir given explicitly', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'parley-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = parseConfig(`data_dir: ${JSON.stringify(dir)}\nadmin:\n  socket: ctl.sock\n`, 'a.yml');
  t.equal(config.core.data_dir, dir, 'an absolute data_dir is kept');
  t.equal(config.core.admin.socket, resolve('ctl.sock'));
});

t.test('missing file: CONFIG_NOT_FOUND naming the file', async (t) => {
  const file = fixture('does-not-exist.yml');
  const err = await bootError(t, () => loadConfig(file));
  t.equal(err.code, 'CONFIG_NOT_FOUND');
  t.equal(err.message, `config file ${file}: not found`);
  const dir = await bootError(t, () => loadConfig(fixture('')));
  t.equal(dir.code, 'CONFIG_NOT_FOUND');
  t.match(dir.message, /is a directory, not a file$/);
});

t.test('YAML syntax errors: CONFIG_SYNTAX with file:line:col, one line', async (t) => {
  const file = fixture('syntax-error.yml');
  const err = await bootError(t, () => loadConfig(file));
  t.equal(err.code, 'CONFIG_SYNTAX');
  t.match(err.message, new RegExp(`^${escape(file)}:2:1: `));
  t.notMatch(err.message, /\n/);

  const tab = await bootError(t, () => parseConfig('log:\n\tlevel: info\n', 'tab.yml'));
  t.equal(tab.code, 'CONFIG_SYNTAX');
  t.match(tab.message, /^tab\.yml:2:1: .*[Tt]ab/);

  const two = await bootError(t, () => parseConfig('hosts: [a]\n---\nhosts: [b]\n', 'two.yml'));
  t.match(two.message, /^two\.yml:2:1: .*multiple documents/);
});

t.test('duplicate keys are an error', async (t) => {
  const file = fixture('duplicate-key.yml');
  const err = await bootError(t, () => loadConfig(file));
  t.equal(err.code, 'CONFIG_SYNTAX');
  t.equal(err.message, `${file}:3:1: duplicate key 'data_dir' (each key may appear once in a mapping)`);
  const nested = await bootError(t, () => parseConfig('log:\n  level: info\n  level: debug\n', 'd.yml'));
  t.match(nested.message, /^d\.yml:3:3: duplicate key 'level'/);
});

t.test('custom and non-core tags are refused', async (t) => {
  const file = fixture('custom-tag.yml');
  const err = await bootError(t, () => loadConfig(file));
  t.equal(err.code, 'CONFIG_SYNTAX');
  t.match(err.message, new RegExp(`^${escape(file)}:2:11: .*!env`));
  const binary = await bootError(t, () => parseConfig('data_dir: !!binary aGk=\n', 'b.yml'));
  t.equal(binary.message, 'b.yml:1:11: tag !!binary is not allowed in the config (only plain YAML values)');
  const set = await bootError(t, () => parseConfig('hosts: !!set {a}\n', 's.yml'));
  t.match(set.message, /^s\.yml:1:8: tag !!set is not allowed/);
  // Standard tags are plain YAML and stay allowed.
  t.equal(parseConfig('data_dir: !!str 2024\n', 'ok.yml').core.data_dir, resolve('2024'));
});

t.test('alias bombs are refused', async (t) => {
  const file = fixture('alias-bomb.yml');
  const started = Date.now();
  const err = await bootError(t, () => loadConfig(file));
  t.equal(err.code, 'CONFIG_SYNTAX');
  t.match(err.message, new RegExp(`^${escape(file)}:3:\\d+: aliases expand the document too much`));
  t.ok(Date.now() - started < 5000, 'refused quickly');
});

t.test('ordinary anchors and aliases', async (t) => {
  const config = parseConfig([
    'hosts: [a.example, b.example]',
    'modules:',
    '  version: &v {name: Shared}',
    'host_config:',
    '  b.example:',
    '    modules:',
    '      version: *v',
  ].join('\n'), 'x.yml');
  t.same(config.modulesFor('b.example').get('version')?.raw, { name: 'Shared' });
  const undefinedAlias = await bootError(t, () => parseConfig('hosts: [*nope]\n', 'u.yml'));
  t.equal(undefinedAlias.message, 'u.yml:1:9: alias *nope has no anchor &nope before it');
  const complexKey = await bootError(t, () => parseConfig('? [a, b]\n: 1\n', 'k.yml'));
  t.equal(complexKey.message, 'k.yml:1:3: mapping keys must be plain values, not lists or mappings');
});

t.test('unknown keys name the key, the valid ones and file:line:col', async (t) => {
  const top = fixture('unknown-key.yml');
  const err = await bootError(t, () => loadConfig(top));
  t.ok(err instanceof ConfigError);
  t.equal(err.code, 'CONFIG_INVALID');
  t.equal(err.message, `${top}:2:1: lisen: unknown key 'lisen' (did you mean 'listen'? valid keys: hosts, data_dir, log, certfiles, listen, storage, auth, limits, s2s, modules, host_config, components, admin)`);

  const nested = fixture('unknown-nested-key.yml');
  const err2 = await bootError(t, () => loadConfig(nested));
  t.match(err2.message, new RegExp(`^${escape(nested)}:5:5: listen\\.0\\.starttls: unknown key 'starttls' \\(did you mean 'starttls_required'\\? valid keys: port, ip, module,`));

  const deep = await bootError(t, () => parseConfig('limits:\n  max_stanza: 1MiB\n', 'l.yml'));
  t.match(deep.message, /^l\.yml:2:3: limits\.max_stanza: unknown key 'max_stanza'/);
});

t.test('bad values name the path and the line of the value', async (t) => {
  const file = fixture('bad-port.yml');
  const err = await bootError(t, () => loadConfig(file));
  t.equal(err.message, `${file}:5:11: listen.1.port: expected port number from 0 to 65535, got 70000`);

  const cases: Array<[string, RegExp]> = [
    ['log:\n  level: verbose\n', /^c\.yml:2:10: log\.level: expected one of debug, info, warn, error, got "verbose"$/],
    ['limits:\n  c2s_idle_timeout: 300\n', /^c\.yml:2:21: limits\.c2s_idle_timeout: expected duration .* got 300 \(add a unit/],
    ['limits:\n  c2s_idle_timeout: 30d\n', /^c\.yml:2:21: limits\.c2s_idle_timeout: expected duration from 0 to 24d/],
    ['limits:\n  max_stanza_size: 4KiB\n', /^c\.yml:2:20: limits\.max_stanza_size: expected size of at least 10KB/],
    ['limits:\n  max_stanza_size: 20KiB\n  max_token_size: 64KiB\n', /^c\.yml:3:19: limits\.max_token_size: must not be larger than max_stanza_size$/],
    ['limits:\n  http_request_timeout: 5s\n', /^c\.yml:1:1: limits\.http_headers_timeout: must not be longer than http_request_timeout$/],
    ['auth:\n  scram_iterations: 1000\n', /^c\.yml:2:21: auth\.scram_iterations: expected integer of at least 4096, got 1000$/],
    ['auth:\n  mechanisms: [SCRAM-SHA-1, DIGEST-MD5]\n', /^c\.yml:2:29: auth\.mechanisms\.1: expected one of SCRAM-SHA-512-PLUS, SCRAM-SHA-256-PLUS, SCRAM-SHA-1-PLUS, SCRAM-SHA-512, SCRAM-SHA-256, SCRAM-SHA-1, PLAIN, got "DIGEST-MD5"$/],
    ['auth:\n  mechanisms: []\n', /^c\.yml:2:15: auth\.mechanisms: expected at least 1 item/],
    ['hosts: []\n', /^c\.yml:1:8: hosts: expected at least 1 item\(s\), got 0$/],
    ['hosts: [localhost, LOCALHOST]\n', /^c\.yml:1:20: hosts\.1: duplicate of item 0/],
    ['hosts: ["not a host"]\n', /^c\.yml:1:9: hosts\.0: expected a domain name, got "not a host"/],
    ['listen:\n  - port: 5222\n', /^c\.yml:2:5: listen\.0\.module: missing \(expected one of c2s, s2s, http, component\)$/],
    ['listen:\n  - port: 5222\n    module: c2s\n    ip: localhost\n', /^c\.yml:4:9: listen\.0\.ip: expected an IP address/],
    ['listen:\n  - {port: 5222, module: c2s}\n  - {port: 5222, module: http}\n', /^c\.yml:3:12: listen\.1\.port: port 5222 on :: is already used by listen\.0$/],
    ['listen:\n  - {port: 5222, module: c2s, tls: "yes"}\n', /^c\.yml:2:36: listen\.0\.tls: expected true or false, got "yes"/],
    ['storage:\n  driver: mongodb\n', /^c\.yml:1:1: storage\.uri: required when driver is mongodb$/],
    ['storage:\n  driver: mongodb\n  uri: mongodb://db/parley\n  path: x.db\n', /^c\.yml:4:3: storage\.path: only used by the embedded driver/],
    ['storage:\n  driver: mongodb\n  uri: mongodb://db/parley\n  commit_batch: 10\n', /^c\.yml:4:3: storage\.commit_batch: only used by the embedded driver/],
    ['storage:\n  commit_batch: 0\n', /^c\.yml:2:17: storage\.commit_batch: /],
    ['storage:\n  uri: mongodb://db/parley\n', /^c\.yml:2:3: storage\.uri: only used by the mongodb driver \(add driver: mongodb\)$/],
    ['storage:\n  driver: mongodb\n  uri: postgres://db\n', /^c\.yml:3:8: storage\.uri: expected string matching/],
    ['modules:\n  ping: yes\n', /^c\.yml:2:9: modules\.ping: expected a mapping of module options, nothing \(defaults\) or false \(disabled\), got "yes"$/],
    ['modules:\n  ping: [1]\n', /^c\.yml:2:9: modules\.ping: expected a mapping of module options.*got a list$/],
    ['data_dir: ""\n', /^c\.yml:1:11: data_dir: expected non-empty string, got ""$/],
    ['- hosts\n', /^c\.yml:1:1: \(top level\): expected mapping, got a list$/],
  ];
  for (const [text, expected] of cases) {
    const e = await bootError(t, () => parseConfig(text, 'c.yml'));
    t.equal(e.code, 'CONFIG_INVALID', text);
    t.match(e.message, expected, text);
    t.notMatch(e.message, /\n/, `${text}: one line`);
  }
});

t.test('host_config for a host that is not in hosts is refused', async (t) => {
  const file = fixture('unknown-host.yml');
  const err = await bootError(t, () => loadConfig(file));
  t.equal(err.code, 'CONFIG_INVALID');
  t.equal(err.message, `${file}:3:3: host_config.example.org: host 'example.org' is not listed in hosts (localhost)`);
  const badKey = await bootError(t, () => parseConfig('host_config:\n  "bad host": {}\n', 'h.yml'));
  t.match(badKey.message, /^h\.yml:2:3: host_config\.bad host: expected a domain name/);
  // Host names match after preparation, as JIDs do.
  const ok = parseConfig('hosts: [example.com]\nhost_config:\n  EXAMPLE.com:\n    modules: {ping: false}\n', 'h.yml');
  t.notOk(ok.modulesFor('example.com').has('ping'));
});

t.test('modulesFor merges global and per-host modules', async (t) => {
  const config = await loadConfig(fixture('valid.yml'));
  const com = config.modulesFor('example.com');
  t.same([...com.keys()], ['disco', 'ping', 'version', 'time'], 'false disables a module globally');
  t.same(com.get('version'), { raw: { name: 'Parley' }, path: ['modules', 'version'] });
  t.same(com.get('ping'), { raw: null, path: ['modules', 'ping'] }, 'an empty entry means defaults');

  const net = config.modulesFor('example.net');
  t.notOk(net.has('version'), 'a host value of false disables the module there');
  t.same(net.get('muc'), {
    raw: { host: 'conference.example.net' },
    path: ['host_config', 'Example.NET'.toLowerCase(), 'modules', 'muc'],
  }, 'a host can add a module, with the path of its entry');
  t.ok(net.has('disco') && net.has('ping') && net.has('time'), 'global modules stay');
  t.equal(config.locate(net.get('muc')!.path), `${fixture('valid.yml')}:22:7`, 'the path locates the host entry, by its key');
  t.throws(() => config.modulesFor('other.example'), /not a configured host/);

  const replaced = parseConfig([
    'hosts: [a.example, b.example]',
    'modules:',
    '  version: {name: Global, show_os: true}',
    '  carbons: false',
    'host_config:',
    '  b.example:',
    '    modules:',
    '      version: {name: B}',
    '      carbons: {}',
  ].join('\n'), 'r.yml');
  t.same(replaced.modulesFor('b.example').get('version')?.raw, { name: 'B' }, 'a host entry replaces the options, no deep merge');
  t.same(replaced.modulesFor('b.example').get('version')?.path, ['host_config', 'b.example', 'modules', 'version']);
  t.ok(replaced.modulesFor('b.example').has('carbons'), 'a host can enable a module disabled globally');
  t.notOk(replaced.modulesFor('a.example').has('carbons'));
  t.same(replaced.modulesFor('a.example').get('version')?.raw, { name: 'Global', show_os: true });
  // The result is a fresh map each time: a caller changing it does not affect the next one.
  const first = replaced.modulesFor('a.example');
  first.delete('version');
  t.ok(replaced.modulesFor('a.example').has('version'));
});

t.test('locate: value, key, and nearest ancestor for missing paths', async (t) => {
  const config: LoadedConfig = parseConfig([
    'hosts: [localhost]',
    'listen:',
    '  - port: 5222',
    '    module: c2s',
    'modules:',
    '  ping:',
    '  version:',
    '    name: X',
  ].join('\n'), 'p.yml');
  t.equal(config.locate(['listen', 0, 'port']), 'p.yml:3:11');
  t.equal(config.locate(['listen', 0, 'port'], 'key'), 'p.yml:3:5');
  t.equal(config.locate(['listen', 0]), 'p.yml:3:5');
  t.equal(config.locate(['listen', '0', 'module']), 'p.yml:4:13', 'numeric strings index lists');
  t.equal(config.locate(['modules', 'ping']), 'p.yml:6:3', 'an empty value is located by its key');
  t.equal(config.locate(['modules', 'version', 'name']), 'p.yml:8:11');
  t.equal(config.locate(['modules', 'version', 'missing']), 'p.yml:7:3', 'missing key: the parent key');
  t.equal(config.locate(['modules', 'version']), 'p.yml:7:3', 'a block mapping: its key');
  t.equal(config.locate(['modules', 'version'], 'key'), 'p.yml:7:3');
  t.equal(config.locate(['listen', 5, 'port']), 'p.yml:2:1', 'missing item: the list key');
  t.equal(config.locate(['nothing']), 'p.yml:1:1');
  t.equal(config.locate([]), 'p.yml:1:1');
  t.equal(readYaml('', 'e.yml').locate(['a', 'b']), 'e.yml:1:1');
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
