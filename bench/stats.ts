// Measurement helpers: latency histograms, the bench's own event-loop stalls, CPU shares,
// and a bounded-concurrency runner for the login bursts.
import { createHistogram, monitorEventLoopDelay, performance, type RecordableHistogram } from 'node:perf_hooks';

/** Latencies recorded in microseconds (the histogram takes integers), reported in ms. */
export class Latency {
  private readonly h: RecordableHistogram = createHistogram();

  recordMs(ms: number): void {
    this.h.record(Math.max(1, Math.round(ms * 1000)));
  }

  get count(): number {
    return this.h.count;
  }

  summary(): { count: number; p50: number; p99: number; max: number } {
    if (this.h.count === 0) return { count: 0, p50: NaN, p99: NaN, max: NaN };
    return {
      count: this.h.count,
      p50: this.h.percentile(50) / 1000,
      p99: this.h.percentile(99) / 1000,
      max: this.h.max / 1000,
    };
  }
}

/** The longest the bench's event loop was blocked while enabled, in ms. */
export class LoopStall {
  private readonly h = monitorEventLoopDelay({ resolution: 10 });

  start(): void {
    this.h.reset();
    this.h.enable();
  }

  stopMs(): number {
    this.h.disable();
    return this.h.max / 1e6;
  }
}

/** CPU used by this process over an interval, as a percentage of one core. */
export function cpuMeter(): () => number {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  return () => {
    const c = process.cpuUsage(c0);
    return ((c.user + c.system) / 1000 / (performance.now() - t0)) * 100;
  };
}

/**
 * Runs task(0..count-1) with at most `concurrency` at a time. The first failure stops new tasks;
 * it is thrown once the running ones have settled, so no task is left half-done in the background.
 */
export async function runPool<T>(count: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const results = new Array<T>(count);
  let nextIndex = 0;
  let failure: unknown;
  const worker = async () => {
    while (failure === undefined && nextIndex < count) {
      const i = nextIndex++;
      try {
        results[i] = await task(i);
      } catch (err) {
        if (failure === undefined) failure = err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  if (failure !== undefined) throw failure;
  return results;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Rejects with `what` when the promise takes longer than ms: every wait in the bench is bounded. */
export function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  // After a timeout the work may still fail later (its server is being stopped); that late
  // failure is expected and must not surface as an unhandled rejection.
  p.catch(() => undefined);
  let timer: NodeJS.Timeout;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${Math.round(ms / 1000)} s`)), ms);
  });
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}
