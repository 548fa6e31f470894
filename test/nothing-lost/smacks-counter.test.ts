// XEP-0198 counters are xs:unsignedInt: after 2^32 - 1 comes 0 (§4). The ack arithmetic must
// work across that wrap, and still catch a client acknowledging more than it was sent.
import xml from '@xmpp/xml';
import t from 'tap';
import {
  COUNTER_MODULUS, HandledCountTooHigh, StreamManagementState, countDistance, nextCount, parseCount,
} from '../../lib/session/smacks.js';

const MAX = COUNTER_MODULUS - 1;

t.test('counting wraps from 2^32 - 1 to 0', async (t) => {
  t.equal(nextCount(0), 1);
  t.equal(nextCount(MAX - 1), MAX);
  t.equal(nextCount(MAX), 0);
  t.equal(countDistance(MAX - 1, 2), 4, 'distance across the wrap');
  t.equal(countDistance(5, 5), 0);
  t.equal(countDistance(3, 2), MAX, 'a value behind is almost a full turn ahead');
});

t.test('h is parsed as an unsignedInt and nothing else', async (t) => {
  t.equal(parseCount('0'), 0);
  t.equal(parseCount(String(MAX)), MAX);
  for (const bad of [undefined, '', '-1', '4294967296', '1.5', ' 1', '0x10', '99999999999']) {
    t.equal(parseCount(bad), undefined, `refused: ${String(bad)}`);
  }
});

t.test('the handled counter of the client stanzas wraps', async (t) => {
  const sm = new StreamManagementState();
  sm.handled = MAX - 1;
  sm.countHandled();
  t.equal(sm.handled, MAX);
  sm.countHandled();
  t.equal(sm.handled, 0);
});

function tooHigh(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch (err) {
    return err instanceof HandledCountTooHigh;
  }
}

const stanza = (n: number) => ({ stanza: xml('message', { id: `m${n}` }), sentAt: n, onOutcome: undefined });

t.test('acks across the wrap remove exactly the stanzas they cover', async (t) => {
  const sm = new StreamManagementState();
  // As if 2^32 - 2 stanzas had been sent and acknowledged already.
  sm.acked = MAX - 1;
  for (let i = 0; i < 5; i++) sm.push(stanza(i));
  t.equal(sm.sent, 3, 'five more: MAX-1 + 5 wraps to 3');
  const first = sm.ack(MAX);
  t.same(first.map((e) => e.stanza.attrs.id), ['m0'], 'h = 2^32 - 1 covers one');
  const next = sm.ack(1);
  t.same(next.map((e) => e.stanza.attrs.id), ['m1', 'm2'], 'h = 1 covers 2^32 - 1 + 2');
  t.equal(sm.unacked, 2);
  t.same(sm.pending().map((e) => e.stanza.attrs.id), ['m3', 'm4']);
  t.same(sm.ack(1), [], 'the same h again covers nothing');
  t.same(sm.ack(3).map((e) => e.stanza.attrs.id), ['m3', 'm4']);
  t.equal(sm.unacked, 0);
  t.equal(sm.acked, 3);
});

t.test('an h beyond what was sent is handled-count-too-high, also across the wrap', async (t) => {
  const sm = new StreamManagementState();
  sm.acked = MAX;
  sm.push(stanza(1));
  sm.push(stanza(2));
  t.equal(sm.sent, 1);
  t.ok(tooHigh(() => sm.ack(2)), 'one more than sent');
  t.ok(tooHigh(() => sm.ack(MAX - 1)), 'an h behind the last ack is not a small ack');
  t.equal(sm.unacked, 2, 'nothing was removed by the refused acks');
  try {
    sm.ack(5);
  } catch (err) {
    const el = (err as HandledCountTooHigh).toElement();
    const extra = el.getChild('handled-count-too-high', 'urn:xmpp:sm:3');
    t.ok(el.getChild('undefined-condition'), 'undefined-condition stream error');
    t.same([extra?.attrs.h, extra?.attrs['send-count']], ['5', '1']);
  }
  t.same(sm.ack(1).length, 2);
});

t.test('a long queue is acknowledged in pieces and stays in order', async (t) => {
  const sm = new StreamManagementState();
  for (let i = 0; i < 5000; i++) sm.push(stanza(i));
  let h = 0;
  const seen: string[] = [];
  while (sm.unacked > 0) {
    h = Math.min(h + 7, 5000);
    for (const e of sm.ack(h)) seen.push(e.stanza.attrs.id!);
  }
  t.equal(seen.length, 5000);
  t.ok(seen.every((id, i) => id === `m${i}`), 'every stanza once, in order');
  const rest = new StreamManagementState();
  rest.push(stanza(1));
  rest.push(stanza(2));
  t.same(rest.takeAll().length, 2);
  t.equal(rest.unacked, 0);
});
