// WAL checkpoints of the embedded database, run on a worker thread instead of the event loop.
//
// Why: with synchronous=NORMAL a commit costs no fsync, but every checkpoint (copying the WAL back
// into the database file) costs two, one on the WAL and one on the database file. SQLite runs
// them inline on the committing connection once the WAL holds 1000 pages, which under a burst of
// writes is every few dozen messages, and each fsync blocks the event loop for milliseconds.
// Measured on the offline bench, those fsyncs were more than half of the time spent storing.
// Here a second connection on a worker thread checkpoints every `intervalMs` (PASSIVE: it never
// blocks the writer, and it copies only what is already committed). Durability is unchanged: a
// commit is in the WAL before the write returns, whoever checkpoints it later.
//
// The writer keeps an automatic checkpoint of its own at a much larger WAL size (see
// INLINE_CHECKPOINT_PAGES in embedded.ts), as a bound on the WAL should this thread fall behind
// or die: under a write load that never pauses, the WAL is only restarted from its beginning by a
// checkpoint that catches up with the writer, which only the writer's own one does for sure.
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../log.js';

// Plain CommonJS evaluated in the worker: no TypeScript loader is needed in the thread, whatever
// way the main thread was started (tsx register, --import, a test runner).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
// timeout 0: a lock held by another process is simply retried on the next interval.
const db = new Database(workerData.path, { timeout: 0 });
const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (err) {
    parentPort.postMessage({ error: err && err.message ? err.message : String(err) });
  }
}, workerData.intervalMs);
parentPort.on('message', () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

export interface CheckpointerOptions {
  /** The database file (in WAL mode already). */
  path: string;
  /** Time between two checkpoints. */
  intervalMs: number;
  log?: Logger;
}

export class BackgroundCheckpointer {
  private readonly exited: Promise<void>;

  private constructor(private readonly worker: Worker) {
    this.exited = new Promise((resolve) => worker.once('exit', () => resolve()));
  }

  static start(options: CheckpointerOptions): BackgroundCheckpointer {
    const module = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { module, path: options.path, intervalMs: options.intervalMs },
    });
    // Housekeeping must never keep a process alive that has nothing else to do (CLI, tests).
    worker.unref();
    worker.on('message', (m: { error?: string }) => {
      options.log?.warn('background WAL checkpoint failed; retrying on the next interval', { error: m.error });
    });
    worker.on('error', (err) => {
      // The writer's own automatic checkpoint still bounds the WAL without this thread.
      options.log?.error('the WAL checkpoint thread stopped', { err });
    });
    return new BackgroundCheckpointer(worker);
  }

  /** Stops the thread and closes its connection; resolves once the thread has ended. */
  async stop(): Promise<void> {
    // Referenced again while it winds down: otherwise a process with nothing else to do would
    // exit in the middle of this await, before the caller's close() finished.
    this.worker.ref();
    this.worker.postMessage('stop');
    await this.exited;
  }
}
