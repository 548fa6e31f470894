// JID preparation and parsing (RFC 7622).
import t from 'tap';
import { Jid, JidError, prepDomain, prepLocal, prepResource } from '../lib/jid.js';

t.test('parse and canonical forms', async (t) => {
  const j = Jid.parse('Alice@Example.COM/Phone One');
  t.equal(j.local, 'alice');
  t.equal(j.domain, 'example.com');
  t.equal(j.resource, 'Phone One', 'resources keep their case and spaces');
  t.equal(j.bare, 'alice@example.com');
  t.equal(j.full, 'alice@example.com/Phone One');
  t.ok(Jid.parse('example.com').isDomain);
  t.ok(Jid.parse('a@example.com').isBare);
  t.equal(Jid.parse('a@example.com/r/with/slashes').resource, 'r/with/slashes', 'only the first slash splits');
  t.equal(Jid.parse('+4915112345678@example.com').local, '+4915112345678', 'E.164 localparts are valid');
  t.equal(Jid.parse('example.com.').domain, 'example.com', 'one trailing dot is stripped');
  t.equal(Jid.parse('[::1]').domain, '[::1]');
  t.ok(Jid.parse('a@b/c').equals(Jid.parse('A@B/c')));
  t.notOk(Jid.parse('a@b/c').equals(Jid.parse('a@b/C')));
});

t.test('non-ASCII preparation', async (t) => {
  t.equal(prepLocal('ÄLICE'), 'älice', 'case folding beyond ASCII');
  t.equal(prepLocal('ａｌｉｃｅ'), 'alice', 'fullwidth forms are width-mapped');
  t.equal(prepLocal('e\u0301'), '\u00e9', 'NFC');
  t.equal(prepDomain('MÜNCHEN.example'), 'münchen.example');
  t.equal(prepResource('a\u00a0b'), 'a b', 'non-ASCII spaces become spaces');
  t.equal(prepResource('e\u0301'), '\u00e9');
});

t.test('malformed JIDs are refused', async (t) => {
  for (const bad of ['', '@example.com', 'a@', 'a@example.com/', 'a"b@example.com', "a'b@x", 'a<b@x', 'a b@x',
    'a@b@c', 'a@exa mple.com', 'a@.com', 'a@[zz]', `${'a'.repeat(1024)}@x`, `a@x/${'r'.repeat(1024)}`, 'a@x/\u0007']) {
    t.throws(() => Jid.parse(bad), JidError, JSON.stringify(bad.slice(0, 30)));
  }
  t.equal(Jid.tryParse('a@b@c'), undefined);
  t.equal(Jid.tryParse(undefined), undefined);
});
