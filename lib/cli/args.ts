// Shared command-line handling: `--config PATH` and one-line fatal errors.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The config shipped with Parley, used when no --config is given. */
export const DEFAULT_CONFIG = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'config', 'parley.yml');

export interface ParsedArgs {
  config: string;
  rest: string[];
}

export function parseArgs(argv: string[]): ParsedArgs {
  let config = process.env.PARLEY_CONFIG ?? DEFAULT_CONFIG;
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config' || a === '-c') {
      const value = argv[++i];
      if (!value) throw new UsageError('--config needs a path');
      config = value;
    } else if (a.startsWith('--config=')) {
      config = a.slice('--config='.length);
    } else {
      rest.push(a);
    }
  }
  return { config: path.resolve(config), rest };
}

export class UsageError extends Error {}

/** Prints one line and exits non-zero: 2 for usage errors, 1 for everything else. */
export function fail(program: string, err: unknown): never {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`${program}: ${message.split('\n')[0]}\n`);
  process.exit(err instanceof UsageError ? 2 : 1);
}
