// The progress bar `parleyctl import` draws on a terminal (stderr, so stdout keeps only the
// summary and stays usable in scripts). Off a terminal it draws nothing: a log file full of
// carriage returns helps no one, and the summary line says what happened.
import type { ImportProgress } from './import.js';

export interface ProgressBar {
  /** Shows a line of text until the next update (e.g. while the export is being checked). */
  note(text: string): void;
  update(p: ImportProgress): void;
  /** Erases the bar, so the summary starts on a clean line. */
  done(): void;
}

/** Redraws at most this often; an import reports after every batch. */
const MIN_INTERVAL_MS = 100;

export function progressBar(stream: NodeJS.WriteStream, label = 'importing'): ProgressBar {
  if (!stream.isTTY) return { note() {}, update() {}, done() {} };
  const started = Date.now();
  let last = 0;
  let drawn = false;
  return {
    note(text) {
      stream.write(`\r\x1b[K${label}: ${text}`);
      drawn = true;
    },
    update({ done, total }) {
      const now = Date.now();
      if (done < total && now - last < MIN_INTERVAL_MS) return;
      last = now;
      const ratio = total > 0 ? Math.min(1, done / total) : 1;
      const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - 50));
      const filled = Math.round(ratio * width);
      const elapsed = (now - started) / 1000;
      // The rate so far predicts the rest well: every user costs about the same derivations.
      const eta = done > 0 && done < total ? ` ~${Math.ceil((elapsed / done) * (total - done))} s left` : '';
      stream.write(`\r\x1b[K${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${Math.floor(ratio * 100)}% ${done}/${total} users${eta}`);
      drawn = true;
    },
    done() {
      if (drawn) stream.write('\r\x1b[K');
      drawn = false;
    },
  };
}
