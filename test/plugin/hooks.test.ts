import t from 'tap';
import { HookBus } from '../../lib/hooks.js';
import { silentLogger } from '../../lib/log.js';

t.test('priority order, first answer wins, failures skipped', async (t) => {
  const bus = new HookBus(silentLogger);
  const calls: string[] = [];
  bus.on('e', () => { calls.push('low'); return 'low'; }, -10);
  bus.on('e', () => { calls.push('mid'); return undefined; }, 0);
  bus.on('e', () => { calls.push('high'); throw new Error('broken'); }, 10);
  t.equal(await bus.run('e', {}), 'low');
  t.same(calls, ['high', 'mid', 'low']);
  calls.length = 0;
  const off = bus.on('e', async () => { calls.push('async'); return 'async'; }, 5);
  t.equal(await bus.run('e', {}), 'async');
  t.same(calls, ['high', 'async']);
  off();
  t.equal(await bus.run('e', {}), 'low');
  t.equal(await bus.run('nothing', {}), undefined);
});

t.test('emit runs every handler', async (t) => {
  const bus = new HookBus(silentLogger);
  let n = 0;
  bus.on('e', () => { n++; return 1; });
  bus.on('e', () => { n++; throw new Error('x'); });
  bus.on('e', () => { n++; });
  await bus.emit('e', {});
  t.equal(n, 3);
});
