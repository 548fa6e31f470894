import t from 'tap';
import { createLogger } from '../lib/log.js';

t.test('JSON lines with child fields; secrets redacted; levels', async (t) => {
  const lines: string[] = [];
  const log = createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) });
  const child = log.child({ session: 's1' });
  child.debug('hidden');
  child.info('hello', { password: 'hunter2', user: 'alice', pin: '123456' });
  t.equal(lines.length, 1);
  const entry = JSON.parse(lines[0]!) as Record<string, unknown>;
  t.match(entry, { level: 'info', msg: 'hello', session: 's1', user: 'alice', password: '[redacted]', pin: '[redacted]' });
  t.notMatch(lines[0]!, 'hunter2');
  t.notOk(child.enabled('debug'));
  const pretty: string[] = [];
  createLogger({ format: 'pretty', write: (l) => pretty.push(l) }).warn('careful', { n: 1 });
  t.match(pretty[0], /WARN  careful  n=1$/);
});
