// Opens the configured storage driver at boot. Failures become one BootError with a one-line
// message, so the server exits with a clear reason instead of a driver stack trace.
import { isAbsolute, resolve } from 'node:path';
import { BootError } from '../errors.js';
import type { Logger } from '../log.js';
import { EmbeddedDriver } from './embedded.js';
import type { StorageDriver } from './types.js';

export interface StorageConfig {
  driver: 'embedded' | 'mongodb';
  /** Embedded database file; relative paths are taken from the data directory. */
  path?: string;
  /** Embedded: most writes per commit (EmbeddedOptions.commitBatch). */
  commit_batch?: number;
  uri?: string;
  database?: string;
}

export const DEFAULT_EMBEDDED_FILE = 'parley.db';

/** The file the embedded driver uses for this configuration. */
export function embeddedPath(config: Pick<StorageConfig, 'path'>, dataDir: string): string {
  const path = config.path ?? DEFAULT_EMBEDDED_FILE;
  if (path === ':memory:' || isAbsolute(path)) return path;
  return resolve(dataDir, path);
}

function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

export async function openStorage(
  config: StorageConfig,
  dataDir: string,
  options: { log?: Logger } = {},
): Promise<StorageDriver> {
  switch (config.driver) {
    case 'embedded': {
      const path = embeddedPath(config, dataDir);
      try {
        return EmbeddedDriver.open({ path, commitBatch: config.commit_batch, log: options.log });
      } catch (err) {
        throw new BootError('STORAGE_FAILED', `embedded storage: ${oneLine(err)}`, { cause: err });
      }
    }
    case 'mongodb': {
      if (!config.uri) throw new BootError('STORAGE_FAILED', 'mongodb storage: storage.uri is required');
      // Loaded on demand: the official driver is large, and embedded deployments never need it.
      const { MongoDriver } = await import('./mongodb.js');
      try {
        return await MongoDriver.open({ uri: config.uri, database: config.database });
      } catch (err) {
        throw new BootError('STORAGE_FAILED', `mongodb storage: ${oneLine(err)}`, { cause: err });
      }
    }
    default:
      throw new BootError('STORAGE_FAILED',
        `unknown storage driver ${JSON.stringify((config as { driver: unknown }).driver)}`);
  }
}
