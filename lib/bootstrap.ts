// Opens what both the server and the offline admin CLI need: storage and accounts.
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { Accounts, type AccountRecord } from './accounts.js';
import type { CoreConfig } from './config/core.js';
import type { ScramHash } from './sasl/scram.js';
import { openStorage } from './storage/index.js';
import type { StorageDriver } from './storage/types.js';

export interface CoreServices {
  storage: StorageDriver;
  accounts: Accounts;
  saslSecret: Buffer;
}

export async function openCoreServices(core: CoreConfig): Promise<CoreServices> {
  await mkdir(core.data_dir, { recursive: true, mode: 0o700 });
  const storage = await openStorage(core.storage, core.data_dir);
  try {
    const serverStore = storage.map<string>('server');
    // The secret makes SCRAM answers for unknown users look like real ones; it must stay the
    // same across restarts, or a changing fake salt would reveal that a user is unknown.
    await serverStore.add('server', 'sasl-secret', randomBytes(32).toString('base64'));
    const saslSecret = Buffer.from((await serverStore.get('server', 'sasl-secret'))!, 'base64');
    // Credentials are kept for every SCRAM family, so a mechanism disabled today can be enabled
    // later without a password reset.
    const hashes = new Set<ScramHash>(['SHA-1', 'SHA-256', 'SHA-512']);
    const accounts = new Accounts(storage.map<AccountRecord>('accounts'), {
      iterations: core.auth.scram_iterations,
      hashes: [...hashes],
      secret: saslSecret,
    });
    return { storage, accounts, saslSecret };
  } catch (err) {
    await storage.close().catch(() => undefined);
    throw err;
  }
}
