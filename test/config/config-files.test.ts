// The shipped config files: config/parley.yml runs out of the box, and config/parley.example.yml
// documents every core option (checked against documentSchema(coreSchema), so a new option
// without documentation fails here).
import t from 'tap';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMap, isScalar, isSeq, parse, parseDocument } from 'yaml';
import { loadConfig, parseConfig } from '../../lib/config/load.js';
import { coreSchema } from '../../lib/config/core.js';
import { documentSchema } from '../../lib/config/schema.js';

const configFile = (name: string): string => fileURLToPath(new URL(`../../config/${name}`, import.meta.url));

/**
 * Key paths of the schema listing: `-` stands for "an item of the list", `<name>` for "any key"
 * (e.g. ['listen', '-', 'port'], ['host_config', '<host>', 'modules']).
 */
function schemaPaths(): string[][] {
  const out: string[][] = [];
  const walk = (value: unknown, prefix: string[]): void => {
    if (Array.isArray(value)) {
      for (const item of value) walk(item, [...prefix, '-']);
    } else if (value && typeof value === 'object') {
      for (const [key, child] of Object.entries(value)) {
        out.push([...prefix, key]);
        walk(child, [...prefix, key]);
      }
    }
  };
  walk(parse(documentSchema(coreSchema)), []);
  return out;
}

/**
 * The example with its commented-out options turned back on: a comment line is uncommented when
 * what follows `# ` looks like a YAML key (`  # path: parley.db` -> `  path: parley.db`).
 */
function uncomment(text: string): string {
  return text
    .split('\n')
    .map((line) => line.replace(/^(\s*)# ?(?=\s*(- )?[a-z_][\w.-]*:(\s|$))/, '$1'))
    .join('\n');
}

/** Whether the YAML node has the path; alternatives (duplicate keys, list items) all count. */
function hasPath(node: unknown, path: string[]): boolean {
  if (path.length === 0) return true;
  const [seg, ...rest] = path as [string, ...string[]];
  if (seg === '-') return isSeq(node) && node.items.some((item) => hasPath(item, rest));
  if (!isMap(node)) return false;
  if (seg.startsWith('<')) return node.items.some((pair) => hasPath(pair.value, rest));
  return node.items.some((pair) => isScalar(pair.key) && pair.key.value === seg && hasPath(pair.value, rest));
}

/** Schema paths that the text does not mention, commented-out mentions included. */
function undocumented(text: string): string[] {
  const doc = parseDocument(uncomment(text), { uniqueKeys: false });
  if (doc.errors.length) throw new Error(`uncommented example is not YAML: ${doc.errors[0]!.message}`);
  return schemaPaths().filter((p) => !hasPath(doc.contents, p)).map((p) => p.join('.'));
}

t.test('config/parley.yml loads and runs the documented defaults', async (t) => {
  const config = await loadConfig(configFile('parley.yml'));
  const core = config.core;
  t.same(core.hosts, ['localhost']);
  t.equal(core.data_dir, resolve('data'));
  t.equal(core.storage.driver, 'embedded');
  t.same(core.listen.map((l) => [l.port, l.module, l.tls, l.starttls_required]), [
    [5222, 'c2s', false, true],
    [5443, 'http', true, true],
  ]);
  t.same([...config.modulesFor('localhost').keys()], ['disco', 'ping', 'version', 'time', 'caps', 'uptime', 'roster', 'presence', 'blocking', 'vcard', 'private', 'last', 'carbons', 'csi', 'smacks', 'offline', 'mam', 'push', 'pep', 'muc', 'http_upload', 'host_meta', 'phone', 'register', 'contacts', 'websocket', 'bosh']);
});

t.test('config/parley.example.yml is a valid config at the defaults', async (t) => {
  const example = await loadConfig(configFile('parley.example.yml'));
  t.same(example.core, parseConfig('', 'defaults.yml').core, 'every active line sets the default value');
  t.match(readFileSync(configFile('parley.example.yml'), 'utf8'), /^# modules: see each plugin's options$/m,
    'the section for plugin options is there');
});

t.test('config/parley.example.yml documents every core option', async (t) => {
  const paths = schemaPaths();
  t.ok(paths.length > 40, `the schema listing has the core options (${paths.length})`);
  for (const p of [['listen', '-', 'max_connections_per_ip'], ['storage', 'uri'], ['host_config', '<host>', 'modules'], ['limits', 'c2s_send_queue']]) {
    t.ok(paths.some((q) => q.join('.') === p.join('.')), `listing includes ${p.join('.')}`);
  }
  const text = readFileSync(configFile('parley.example.yml'), 'utf8');
  t.same(undocumented(text), [], 'no option is missing from the example');
  // Commented-out options count as documented.
  t.match(text, /^\s*# uri: /m);
});

t.test('the documentation check notices a missing option', async (t) => {
  const text = readFileSync(configFile('parley.example.yml'), 'utf8');
  const without = (pattern: RegExp): string => text.split('\n').filter((l) => !pattern.test(l)).join('\n');
  t.same(undocumented(without(/^\s*max_attributes:/)), ['limits.max_attributes']);
  t.same(undocumented(without(/^\s*# uri:/)), ['storage.uri']);
  t.same(undocumented(without(/^\s*max_connections_per_ip:/)), ['listen.-.max_connections_per_ip']);
  t.same(undocumented(without(/^#\s+modules:\s*$/)), ['host_config.<host>.modules']);
});
