// A priority hook bus (Prosody's module:hook, ejabberd's run_fold with stop). Higher priority
// runs first; the first handler that returns something other than undefined ends the chain and
// its value is the result. A handler that throws is logged and skipped: one broken plugin never
// takes the server down (ejabberd's rule).
import type { Logger } from './log.js';

export type HookHandler<A = any> = (arg: A) => unknown;

interface Entry {
  fn: HookHandler;
  priority: number;
  owner: string;
  seq: number;
}

let seqCounter = 0;

export class HookBus {
  private readonly handlers = new Map<string, Entry[]>();
  constructor(private readonly log: Logger) {}

  /** Registers a handler; returns a function that removes it. */
  on(event: string, fn: HookHandler, priority = 0, owner = 'core'): () => void {
    const entry: Entry = { fn, priority, owner, seq: seqCounter++ };
    const list = [...(this.handlers.get(event) ?? []), entry];
    // Stable order: priority descending, then registration order.
    list.sort((a, b) => b.priority - a.priority || a.seq - b.seq);
    this.handlers.set(event, list);
    return () => {
      const current = this.handlers.get(event);
      if (!current) return;
      const next = current.filter((e) => e !== entry);
      if (next.length) this.handlers.set(event, next);
      else this.handlers.delete(event);
    };
  }

  has(event: string): boolean {
    return this.handlers.has(event);
  }

  /**
   * Runs handlers in order until one returns a value other than undefined. Handlers may be async;
   * the list is copied first so a handler that unregisters itself does not skip another.
   */
  async run<R = unknown>(event: string, arg: unknown): Promise<R | undefined> {
    const list = this.handlers.get(event);
    if (!list) return undefined;
    for (const entry of list) {
      let result: unknown;
      try {
        result = entry.fn(arg);
        if (result instanceof Promise) result = await result;
      } catch (err) {
        // Protocol errors are answers, not crashes: let them reach the caller.
        if (err instanceof Error && (err.name === 'StanzaError' || err.name === 'StreamError')) throw err;
        this.log.error('hook handler failed', { event, plugin: entry.owner, err });
        continue;
      }
      if (result !== undefined) return result as R;
    }
    return undefined;
  }

  /** Runs every handler regardless of results (notifications); errors are logged. */
  async emit(event: string, arg: unknown): Promise<void> {
    const list = this.handlers.get(event);
    if (!list) return;
    for (const entry of list) {
      try {
        const r = entry.fn(arg);
        if (r instanceof Promise) await r;
      } catch (err) {
        this.log.error('hook handler failed', { event, plugin: entry.owner, err });
      }
    }
  }
}
