// XEP-0198 Stream Management: the per-stream counters and the queue of unacknowledged stanzas.
// No sockets and no timers here (the c2s session owns those), so the arithmetic can be tested on
// its own, including the wrap of the counters at 2^32.
//
// Both counters are xs:unsignedInt (§4): after 2^32 - 1 comes 0. The number of stanzas an `<a/>`
// covers is therefore the forward distance from the last acknowledged count, modulo 2^32; a
// distance larger than what is queued means the peer claims stanzas it was never sent
// (`handled-count-too-high`).
import xml from '@xmpp/xml';
import type { Element } from 'ltx';
import { StreamError } from '../errors.js';
import type { DeliveryCallback } from './types.js';

export const NS_SM = 'urn:xmpp:sm:3';

/** Counters live in [0, 2^32). */
export const COUNTER_MODULUS = 2 ** 32;

/** The counter after `n`: 2^32 - 1 is followed by 0 (XEP-0198 §4). */
export function nextCount(n: number): number {
  return n === COUNTER_MODULUS - 1 ? 0 : n + 1;
}

/** How many steps `to` is ahead of `from`, modulo 2^32. */
export function countDistance(from: number, to: number): number {
  return (to - from + COUNTER_MODULUS) % COUNTER_MODULUS;
}

/** Parses an `h` attribute: a decimal xs:unsignedInt, or undefined when it is not one. */
export function parseCount(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,10}$/.test(text)) return undefined;
  const n = Number(text);
  return n < COUNTER_MODULUS ? n : undefined;
}

/** One stanza written (or queued while the connection is gone) and not acknowledged yet. */
export interface UnackedStanza {
  stanza: Element;
  /** When it was first handed to the session, for the delay stamp when it is sent again. */
  sentAt: number;
  /** Told 'acked' when the client's `h` covers it, 'failed' when the session ends first. */
  onOutcome: DeliveryCallback | undefined;
}

/** The peer acknowledged more stanzas than were sent (§4): a stream error with the counts. */
export class HandledCountTooHigh extends StreamError {
  constructor(readonly h: number, readonly sendCount: number) {
    super('undefined-condition', `acknowledged ${h} but only ${sendCount} stanzas were sent`);
  }

  override toElement(): Element {
    const el = super.toElement();
    el.append(xml('handled-count-too-high', { xmlns: NS_SM, h: String(this.h), 'send-count': String(this.sendCount) }));
    return el;
  }
}

/**
 * A FIFO of unacknowledged stanzas. Acks remove from the front in bulk, so it keeps a head index
 * and compacts only when the dead prefix is large, instead of shifting an array for each ack.
 */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** Removes and returns the first n items. */
  take(n: number): T[] {
    const out = this.items.slice(this.head, this.head + n);
    this.head += out.length;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return out;
  }

  /** The items in order, without removing them. */
  view(): T[] {
    return this.items.slice(this.head);
  }
}

/** Counters and queue of one stream-management session (one client session). */
export class StreamManagementState {
  /** `h` of the stanzas handled from the client; answered in `<a/>` and `<resumed/>`. */
  handled = 0;
  /** The last `h` the client acknowledged: how many of our stanzas it has (mod 2^32). */
  acked = 0;
  /** Stanzas sent since the last `<r/>` went out. */
  sinceRequest = 0;
  private readonly queue = new Fifo<UnackedStanza>();

  /** How many stanzas were sent in all (mod 2^32): the acknowledged ones plus the queue. */
  get sent(): number {
    return (this.acked + this.queue.length) % COUNTER_MODULUS;
  }

  get unacked(): number {
    return this.queue.length;
  }

  /** Counts one stanza handled from the client. */
  countHandled(): void {
    this.handled = nextCount(this.handled);
  }

  /** Queues a stanza sent to the client; returns how many are now unacknowledged. */
  push(entry: UnackedStanza): number {
    this.queue.push(entry);
    return this.queue.length;
  }

  /** Throws HandledCountTooHigh when `h` claims more than was sent; otherwise does nothing. */
  checkAck(h: number): void {
    if (countDistance(this.acked, h) > this.queue.length) throw new HandledCountTooHigh(h, this.sent);
  }

  /** Applies the client's `h`: returns the stanzas it covers, oldest first. */
  ack(h: number): UnackedStanza[] {
    this.checkAck(h);
    const covered = this.queue.take(countDistance(this.acked, h));
    this.acked = h;
    return covered;
  }

  /** The unacknowledged stanzas, oldest first (to send them again on resumption). */
  pending(): UnackedStanza[] {
    return this.queue.view();
  }

  /** Empties the queue (the session ends) and returns what was in it. */
  takeAll(): UnackedStanza[] {
    return this.queue.take(this.queue.length);
  }
}
