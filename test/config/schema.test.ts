// The schema types: each accepts good values, converts them, and refuses bad ones with a one-line
// message naming the dotted path and the file:line:col of the offending YAML node.
import t from 'tap';
import { parse as parseYamlText } from 'yaml';
import { BootError } from '../../lib/errors.js';
import { readYaml } from '../../lib/config/load.js';
import {
  ConfigError, documentSchema, formatDuration, formatSize, NO_LOCATION, parseDuration, parseSize, s, validate,
  type Schema,
} from '../../lib/config/schema.js';

/** The assertions the helpers below use, from the test they run in. */
type Asserts = Pick<typeof t, 'fail' | 'equal' | 'match' | 'notMatch'>;

/** Validates the YAML `text` (file "t.yml") against `schema`. */
function check<T>(schema: Schema<T>, text: string): T {
  const src = readYaml(text, 't.yml');
  return validate(schema, src.value, [], src);
}

/** Validates `key: <value>` and returns the parsed value of `key`. */
function one<T>(schema: Schema<T>, value: string): T {
  return check(s.object({ key: schema }), `key: ${value}\n`).key;
}

/** The ConfigError thrown by `fn`, failing the test when there is none. */
function configError(tt: Asserts, fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    tt.fail(`expected a ConfigError, got ${String(err)}`);
    throw err;
  }
  tt.fail('expected a ConfigError, nothing was thrown');
  throw new Error('no error');
}

/** Asserts that `key: <value>` is refused with a message at t.yml:1:6 mentioning `expected`. */
function refuses(tt: Asserts, schema: Schema<unknown>, value: string, expected: RegExp): void {
  const err = configError(tt, () => one(schema, value));
  tt.equal(err.location, 't.yml:1:6', `${value}: location`);
  tt.equal(err.path, 'key', `${value}: path`);
  tt.match(err.message, /^t\.yml:1:6: key: /, `${value}: message starts with location and path`);
  tt.match(err.message, expected, `${value}: message says what is wrong`);
  tt.notMatch(err.message, /\n/, `${value}: one line`);
}

t.test('ConfigError is a one-line CONFIG_INVALID BootError', async (t) => {
  const err = new ConfigError(['listen', 0, 'port'], 'bad\nthing', 'f.yml:3:9');
  t.ok(err instanceof BootError);
  t.equal(err.code, 'CONFIG_INVALID');
  t.equal(err.message, 'f.yml:3:9: listen.0.port: bad thing');
  t.equal(err.path, 'listen.0.port');
  t.equal(err.location, 'f.yml:3:9');
  const bare = new ConfigError([], 'expected a mapping');
  t.equal(bare.message, '(top level): expected a mapping');
  t.equal(bare.location, undefined);
});

t.test('string', async (t) => {
  t.equal(one(s.string(), 'hello'), 'hello');
  t.equal(one(s.string(), "''"), '');
  t.equal(check(s.object({ key: s.string({ default: 'd' }) }), '{}').key, 'd');
  refuses(t, s.string(), '42', /expected string, got 42 \(put it in quotes\)/);
  refuses(t, s.string(), '[a]', /expected string, got a list/);
  refuses(t, s.string({ minLength: 1 }), "''", /expected non-empty string, got ""/);
  refuses(t, s.string({ maxLength: 3 }), 'abcd', /length of at most 3/);
  refuses(t, s.string({ pattern: /^a+$/ }), 'abc', /matching \/\^a\+\$\/, got "abc"/);
  refuses(t, s.string({ check: (v) => (v === 'no' ? 'not that one' : undefined) }), 'no', /key: not that one$/);
});

t.test('int', async (t) => {
  t.equal(one(s.int(), '42'), 42);
  t.equal(one(s.int(), '-3'), -3);
  t.equal(one(s.int({ min: 1, max: 5 }), '5'), 5);
  refuses(t, s.int(), '1.5', /expected integer, got 1\.5/);
  refuses(t, s.int(), '"12"', /got "12" \(remove the quotes\)/);
  refuses(t, s.int(), 'true', /expected integer, got true/);
  refuses(t, s.int({ min: 1, max: 5 }), '6', /integer from 1 to 5, got 6/);
  refuses(t, s.int({ min: 4096 }), '1000', /integer of at least 4096, got 1000/);
});

t.test('bool', async (t) => {
  t.equal(one(s.bool(), 'true'), true);
  t.equal(one(s.bool(), 'false'), false);
  t.equal(check(s.object({ key: s.bool({ default: true }) }), '{}').key, true);
  refuses(t, s.bool(), 'yes', /expected true or false, got "yes" \(YAML 1\.2 booleans are true and false\)/);
  refuses(t, s.bool(), '1', /expected true or false, got 1/);
});

t.test('duration: a unit is required, except for 0', async (t) => {
  const d = s.duration();
  t.equal(one(d, '250ms'), 250);
  t.equal(one(d, '30s'), 30_000);
  t.equal(one(d, '5m'), 300_000);
  t.equal(one(d, '1h'), 3_600_000);
  t.equal(one(d, '30d'), 30 * 86_400_000);
  t.equal(one(d, '2w'), 14 * 86_400_000);
  t.equal(one(d, '1h30m'), 5_400_000);
  t.equal(one(d, '1h 30m'), 5_400_000);
  t.equal(one(d, '1.5s'), 1500);
  t.equal(one(d, '0'), 0);
  t.equal(one(d, '"0"'), 0);
  refuses(t, d, '30', /expected duration .*, got 30 \(add a unit, e\.g\. '30s' or '30ms'\)/);
  refuses(t, d, '5min', /expected duration \(e\.g\. 250ms, 30s, 5m, 1h, 30d\), got "5min"/);
  refuses(t, d, '-1s', /got "-1s"/);
  refuses(t, d, 's', /got "s"/);
  refuses(t, d, '5s garbage', /got "5s garbage"/);
  refuses(t, s.duration({ min: '1s', max: '1h' }), '500ms', /duration from 1s to 1h .*got "500ms"/);
  refuses(t, s.duration({ min: '1s', max: '1h' }), '2h', /got "2h"/);
  // Defaults in code may be milliseconds or strings; both come out as milliseconds.
  t.equal(check(s.object({ key: s.duration({ default: 90_000 }) }), '{}').key, 90_000);
  t.equal(check(s.object({ key: s.duration({ default: '2m' }) }), '{}').key, 120_000);
  t.equal(s.duration({ default: 90_000 }).defaultText, '90s');
  t.equal(parseDuration('1d'), 86_400_000);
  t.equal(parseDuration(5), undefined);
  t.equal(formatDuration(3_600_000), '1h');
  t.equal(formatDuration(1500), '1500ms');
});

t.test('size: bytes, binary and decimal units', async (t) => {
  const z = s.size();
  t.equal(one(z, '1024'), 1024);
  t.equal(one(z, '256KiB'), 262_144);
  t.equal(one(z, '10MiB'), 10 * 1024 * 1024);
  t.equal(one(z, '1GiB'), 1024 ** 3);
  t.equal(one(z, '1KB'), 1000);
  t.equal(one(z, '2 MB'), 2_000_000);
  t.equal(one(z, '1.5KiB'), 1536);
  t.equal(one(z, '16kib'), 16_384);
  t.equal(one(z, '0'), 0);
  refuses(t, z, '10K', /expected size .*, got "10K" \(write KiB for 1024 or KB for 1000\)/);
  refuses(t, z, '-1', /expected size .*got -1/);
  refuses(t, z, '1.5', /got 1\.5/);
  refuses(t, z, 'lots', /got "lots"/);
  refuses(t, s.size({ min: '1KiB', max: '1MiB' }), '512', /size from 1KiB to 1MiB .*got 512/);
  refuses(t, s.size({ min: '1KiB', max: '1MiB' }), '2MiB', /got "2MiB"/);
  t.equal(check(s.object({ key: s.size({ default: '64KiB' }) }), '{}').key, 65_536);
  t.equal(s.size({ default: 262_144 }).defaultText, '256KiB');
  t.equal(parseSize('3MB'), 3_000_000);
  t.equal(formatSize(1_000_000), '1MB');
  t.equal(formatSize(1023), '1023');
});

t.test('enum', async (t) => {
  const e = s.enum(['c2s', 's2s', 'http']);
  t.equal(one(e, 'http'), 'http');
  refuses(t, e, 'ftp', /expected one of c2s, s2s, http, got "ftp"$/);
  refuses(t, e, 'HTTP', /got "HTTP" \(did you mean http\?\)/);
  refuses(t, e, '5', /got 5/);
});

t.test('domain: prepared like a JID domainpart', async (t) => {
  t.equal(one(s.domain(), 'Example.COM'), 'example.com');
  t.equal(one(s.domain(), 'example.com.'), 'example.com');
  t.equal(one(s.domain(), 'localhost'), 'localhost');
  refuses(t, s.domain(), '"bad domain"', /expected a domain name, got "bad domain" \(forbidden character/);
  refuses(t, s.domain(), 'example.com:5222', /no port or scheme/);
  refuses(t, s.domain(), 'a..b', /malformed domain label/);
  refuses(t, s.domain(), '7', /expected domain name, got 7/);
});

t.test('port', async (t) => {
  t.equal(one(s.port(), '0'), 0);
  t.equal(one(s.port(), '65535'), 65535);
  refuses(t, s.port(), '65536', /port number from 0 to 65535, got 65536/);
  refuses(t, s.port(), '-1', /got -1/);
  refuses(t, s.port(), 'http', /got "http"/);
});

t.test('raw passes values through', async (t) => {
  t.same(one(s.raw(), '{a: [1, 2]}'), { a: [1, 2] });
  t.equal(one(s.raw(), '~'), null);
  t.equal(check(s.object({ key: s.raw() }), '{}').key, undefined, 'absent stays undefined');
  t.equal(check(s.object({ key: s.raw({ default: 7 }) }), '{}').key, 7);
  const err = configError(t, () => check(s.object({ key: s.raw() }), 'other: 1\n'));
  t.match(err.message, /unknown key 'other'/);
  refuses(t, s.raw({ check: (v) => (typeof v === 'object' ? undefined : 'must be a mapping') }), '5', /key: must be a mapping/);
});

t.test('optional', async (t) => {
  const o = s.object({ key: s.optional(s.int()) });
  t.equal(check(o, '{}').key, undefined);
  t.equal(check(o, 'key:\n').key, undefined);
  t.equal(check(o, 'key: 3\n').key, 3);
  refuses(t, s.optional(s.int()), 'x', /expected integer, got "x"/);
});

t.test('array', async (t) => {
  const a = s.array(s.int());
  t.same(one(a, '[1, 2, 3]'), [1, 2, 3]);
  t.same(one(a, '[]'), []);
  t.same(one(a, '~'), [], 'an empty value is an empty list');
  refuses(t, a, '5', /expected list of integer, got 5/);
  refuses(t, s.array(s.int(), { minLength: 1 }), '[]', /expected at least 1 item\(s\), got 0/);
  const dup = configError(t, () => check(s.object({ list: s.array(s.int(), { unique: true }) }), 'list: [1, 2, 1]\n'));
  t.equal(dup.message, 't.yml:1:14: list.2: duplicate of item 0 (1)', 'points at the repeated item');
  const err = configError(t, () => check(s.object({ list: a }), 'list:\n  - 1\n  - two\n'));
  t.equal(err.message, 't.yml:3:5: list.1: expected integer, got "two"');
  const missing = configError(t, () => check(s.object({ list: a }), '{}\n'));
  t.match(missing.message, /^t\.yml:1:1: list: missing \(expected list of integer\)$/);
  // Defaults written in config form are filled through the item schema.
  const withDefaults = s.array(s.object({ port: s.port(), tls: s.bool({ default: false }) }), { default: [{ port: 1 }] });
  t.same(check(s.object({ l: withDefaults }), '{}').l, [{ port: 1, tls: false }]);
  refuses(t, s.array(s.int(), { check: (l) => (l.length % 2 ? 'needs pairs' : undefined) }), '[1]', /key: needs pairs$/);
});

t.test('object: unknown keys, missing keys, defaults', async (t) => {
  const o = s.object({
    name: s.string(),
    inner: s.object({ level: s.enum(['a', 'b'], { default: 'a' }), count: s.int({ default: 1 }) }),
  });
  t.same(check(o, 'name: x\n'), { name: 'x', inner: { level: 'a', count: 1 } }, 'an absent mapping gets its defaults');
  t.same(check(o, 'name: x\ninner:\n'), { name: 'x', inner: { level: 'a', count: 1 } }, 'an empty mapping gets its defaults');
  t.same(check(o, 'name: x\ninner: {count: 3}\n'), { name: 'x', inner: { level: 'a', count: 3 } });

  const top = configError(t, () => check(o, 'name: x\nnmae: y\n'));
  t.equal(top.location, 't.yml:2:1', 'points at the unknown key');
  t.equal(top.message, "t.yml:2:1: nmae: unknown key 'nmae' (did you mean 'name'? valid keys: name, inner)");

  const nested = configError(t, () => check(o, 'name: x\ninner:\n  level: b\n  colour: red\n'));
  t.equal(nested.message, "t.yml:4:3: inner.colour: unknown key 'colour' (valid keys: level, count)");

  const missing = configError(t, () => check(s.object({ inner: s.object({ need: s.int() }) }), 'inner:\n  other: 1\n'));
  t.match(missing.message, /unknown key 'other'/);
  const missingKey = configError(t, () => check(s.object({ inner: s.object({ need: s.int(), opt: s.int({ default: 0 }) }) }), 'inner:\n  opt: 1\n'));
  t.equal(missingKey.message, 't.yml:1:1: inner.need: missing (expected integer)', "a missing key points at its parent's key");

  const wrongType = configError(t, () => check(o, 'name: x\ninner: [1]\n'));
  t.equal(wrongType.message, 't.yml:2:8: inner: expected mapping, got a list');
  const rootType = configError(t, () => check(o, '- a\n'));
  t.equal(rootType.message, 't.yml:1:1: (top level): expected mapping, got a list');

  // Parsed defaults are copies: changing one result does not change the next.
  const first = check(s.object({ l: s.array(s.int(), { default: [1] }) }), '{}');
  first.l.push(2);
  t.same(check(s.object({ l: s.array(s.int(), { default: [1] }) }), '{}').l, [1]);
  const shared = s.object({ l: s.array(s.int(), { default: [1] }) });
  shared.parse({}, [], NO_LOCATION).l.push(2);
  t.same(shared.parse({}, [], NO_LOCATION).l, [1]);

  const refined = s.object({ min: s.int(), max: s.int() }, {
    refine: (v, issue) => {
      if (v.min > v.max) issue(['min'], 'must not be above max');
    },
  });
  const r = configError(t, () => check(refined, 'max: 1\nmin: 2\n'));
  t.equal(r.message, 't.yml:2:6: min: must not be above max');
});

t.test('record', async (t) => {
  const r = s.record(s.int());
  t.same(one(r, '{a: 1, b: 2}'), { a: 1, b: 2 });
  t.same(one(r, '~'), {});
  const bad = configError(t, () => check(s.object({ m: r }), 'm:\n  a: 1\n  b: x\n'));
  t.equal(bad.message, 't.yml:3:6: m.b: expected integer, got "x"');
  refuses(t, r, '[1]', /expected mapping of name to integer, got a list/);
  t.same(check(s.object({ m: s.record(s.int(), { default: { x: 1 } }) }), '{}').m, { x: 1 });

  const byDomain = s.record(s.int(), { key: s.domain() });
  t.same(one(byDomain, '{Example.COM: 1}'), { 'example.com': 1 });
  const badKey = configError(t, () => check(s.object({ m: byDomain }), 'm:\n  ok.example: 1\n  "a b": 2\n'));
  t.equal(badKey.location, 't.yml:3:3', 'a bad key points at the key');
  t.match(badKey.message, /m\.a b: expected a domain name, got "a b"/);
  const dup = configError(t, () => check(s.object({ m: byDomain }), 'm:\n  example.com: 1\n  EXAMPLE.com: 2\n'));
  t.equal(dup.message, "t.yml:3:3: m.EXAMPLE.com: 'EXAMPLE.com' is the same as 'example.com'");

  // __proto__ is an ordinary name in a config, not a way to change the result's prototype.
  const proto = check(s.object({ m: s.record(s.int()) }), 'm:\n  __proto__: 1\n').m;
  t.equal(Object.getPrototypeOf(proto), Object.prototype);
  t.same(Object.keys(proto), ['__proto__']);
});

t.test('validate uses the given path and context', async (t) => {
  const ctx = { locate: (p: ReadonlyArray<string | number>) => `x.yml:${p.length}:1` };
  const err = configError(t, () => validate(s.object({ a: s.int() }), { a: 'z' }, ['modules', 'ping'], ctx));
  t.equal(err.message, 'x.yml:3:1: modules.ping.a: expected integer, got "z"');
  const noLocation = configError(t, () => validate(s.int(), 'z', ['n'], NO_LOCATION));
  t.equal(noLocation.message, 'n: expected integer, got "z"');
});

t.test('documentSchema lists every key as YAML, with type, default and doc', async (t) => {
  const schema = s.object({
    name: s.string({ default: 'P', doc: 'the name' }),
    every: s.duration({ default: '5m' }),
    items: s.array(s.object({ port: s.port(), tls: s.bool({ default: false }) }), { default: [] }),
    hosts: s.record(s.object({ x: s.optional(s.int()) }), { keyName: 'host', default: {} }),
    nested: s.object({ deep: s.size({ default: '1MiB' }) }),
  });
  const text = documentSchema(schema);
  t.same(parseYamlText(text), {
    name: null,
    every: null,
    items: [{ port: null, tls: null }],
    hosts: { '<host>': { x: null } },
    nested: { deep: null },
  }, 'the listing parses as YAML with the same nesting');
  t.match(text, /^name: {2}# string; default: P; the name$/m);
  t.match(text, /^every: {2}# duration .*; default: 5m$/m);
  t.match(text, /^ {2}- port: {2}# port number from 0 to 65535; required$/m);
  t.match(text, /^ {4}x: {2}# integer; optional$/m);
  t.match(text, /^ {2}deep: {2}# size .*; default: 1MiB$/m);
  t.match(documentSchema(schema, 4), /^ {4}name:/m, 'indent shifts every line');
});
