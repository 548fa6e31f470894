// Rate limits kept in the store, so they hold across restarts and, on a shared database, across
// nodes. Each rule is a window that opens with the first attempt and closes `window` later
// (QuicksyServer counts the same way), so the wait announced in Retry-After is exact.
import type { MapStore } from '../../lib/storage/types.js';

export interface Rule {
  /** Milliseconds. */
  window: number;
  max: number;
}

export class Throttle {
  constructor(private readonly store: MapStore<number>, private readonly owner: string) {}

  /**
   * Counts one attempt of `id` under every rule of `scope`. When a rule is full, nothing is
   * counted and the wait until its window closes is returned (milliseconds, at least 1 s).
   */
  async attempt(scope: string, id: string, rules: readonly Rule[]): Promise<number | undefined> {
    const counted: Rule[] = [];
    for (const rule of rules) {
      const key = this.key(scope, id, rule);
      const now = Date.now();
      const n = await this.store.increment(this.owner, key, 1, { ttlMs: rule.window });
      // The counter's TTL starts with its creation; its start time is kept beside it to tell
      // how long the window still runs.
      if (n === 1) await this.store.set(this.owner, `${key}#start`, now, { ttlMs: rule.window });
      if (n > rule.max) {
        // Increments are atomic, so two racing attempts cannot both pass; the loser takes its
        // count back so that refused attempts do not prolong the wait.
        await this.store.increment(this.owner, key, -1);
        await this.refundRules(scope, id, counted);
        const start = (await this.store.get(this.owner, `${key}#start`)) ?? now;
        return Math.max(1000, start + rule.window - now);
      }
      counted.push(rule);
    }
    return undefined;
  }

  /** Takes back one attempt counted by `attempt` (e.g. an SMS that could not be sent). */
  async refund(scope: string, id: string, rules: readonly Rule[]): Promise<void> {
    await this.refundRules(scope, id, rules);
  }

  private async refundRules(scope: string, id: string, rules: readonly Rule[]): Promise<void> {
    for (const rule of rules) {
      const key = this.key(scope, id, rule);
      // A window that closed meanwhile is gone: taking back from it would create a negative counter.
      if ((await this.store.get(this.owner, key)) !== undefined) await this.store.increment(this.owner, key, -1);
    }
  }

  private key(scope: string, id: string, rule: Rule): string {
    return `${scope}/${rule.window}/${id}`;
  }
}
