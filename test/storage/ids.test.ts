// Archive ids: unique, URL-safe, time-ordered as strings, not predictable from one another.
import t from 'tap';
import { idTime, newId } from '../../lib/storage/ids.js';

t.test('format', async (t) => {
  const id = newId();
  t.match(id, /^[0-9a-z]{9}[A-Za-z0-9_-]{16}$/, 'base36 time + base64url random, URL-safe');
  t.equal(encodeURIComponent(id), id, 'needs no escaping in a URL');
  const now = Date.now();
  const time = idTime(id);
  t.ok(time !== undefined && Math.abs(time - now) < 1000, 'the time prefix is the creation time');
  t.equal(idTime(newId(0)), 0);
  t.equal(idTime('not-an-id'), undefined, 'foreign ids have no time');
  t.equal(idTime('zzzzzzzzz!!!!!!!!!!!!!!!!'), undefined);
});

t.test('unique', async (t) => {
  const ids = new Set<string>();
  for (let i = 0; i < 100_000; i++) ids.add(newId());
  t.equal(ids.size, 100_000, '100k ids, no duplicate');
});

t.test('roughly time-ordered', async (t) => {
  const times = [1, 999, 1_000_000, Date.now(), Date.now() + 86_400_000, 36 ** 9 - 1];
  const ids = times.map((ms) => newId(ms));
  t.same([...ids].sort(), ids, 'string order follows creation time');
  t.equal(newId(36 ** 9 - 1).length, 25, 'the prefix keeps its width through year 5000');
});

t.test('not guessable from its neighbour', async (t) => {
  const a = newId(5000);
  const b = newId(5000);
  t.equal(a.slice(0, 9), b.slice(0, 9), 'same millisecond, same prefix');
  t.not(a.slice(9), b.slice(9), 'but independent random parts');
  // 96 random bits: two ids of the same millisecond share no long common run of characters.
  let common = 0;
  for (let i = 9; i < 25; i++) if (a[i] === b[i]) common++;
  t.ok(common < 8, 'random parts look independent');
});
