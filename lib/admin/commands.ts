// Account administration shared by the running server (through the admin socket) and by
// parleyctl when no server runs: one implementation, two transports.
import path from 'node:path';
import { AccountError, type Accounts } from '../accounts.js';
import { Jid, JidError } from '../jid.js';
import type { StorageDriver } from '../storage/types.js';
import { ImportError, formatSummary, importPiefxis, type ImportProgress } from './import.js';
import { AdminCommandError, type AdminCommand } from './socket.js';

export interface AdminDeps {
  accounts: Accounts;
  storage: StorageDriver;
  hosts: readonly string[];
  /** Present when the server runs: ends the sessions of a removed or re-keyed account. */
  kickUser?(bare: string, reason: string): void;
  status?(): string;
  kick?(jid: string): number;
  stats?(): Promise<string>;
  reload?(): Promise<string>;
  stop?(): void;
  /** Present when parleyctl runs the import itself: drives its progress bar. */
  importProgress?(p: ImportProgress): void;
}

function expectArgs(args: string[], names: string[]): string[] {
  if (args.length !== names.length) {
    throw new AdminCommandError(`expected ${names.length} argument(s): ${names.join(' ')}`);
  }
  return args;
}

function checkHost(deps: AdminDeps, host: string): string {
  let domain: string;
  try {
    domain = Jid.parse(host).domain;
  } catch (err) {
    throw new AdminCommandError(`invalid host '${host}': ${(err as JidError).message}`);
  }
  if (!deps.hosts.includes(domain)) throw new AdminCommandError(`host '${host}' is not served here (hosts: ${deps.hosts.join(', ')})`);
  return domain;
}

function accountMessage(err: unknown, user: string, host: string): never {
  if (err instanceof AccountError) {
    const messages: Record<string, string> = {
      'exists': `user ${user}@${host} already exists`,
      'not-found': `user ${user}@${host} does not exist`,
      'invalid-username': `invalid username '${user}'`,
      'invalid-password': 'invalid password (empty or not allowed by SASLprep)',
    };
    throw new AdminCommandError(messages[err.code] ?? err.message);
  }
  throw err;
}

export function createAdminCommands(deps: AdminDeps): Map<string, AdminCommand> {
  const commands = new Map<string, AdminCommand>();
  commands.set('register', async (args) => {
    const [user, rawHost, password] = expectArgs(args, ['USER', 'HOST', 'PASSWORD']);
    const host = checkHost(deps, rawHost!);
    await deps.accounts.register(user!, host, password!).catch((e: unknown) => accountMessage(e, user!, host));
    return `user ${user}@${host} registered`;
  });
  commands.set('unregister', async (args) => {
    const [user, rawHost] = expectArgs(args, ['USER', 'HOST']);
    const host = checkHost(deps, rawHost!);
    await deps.accounts.remove(user!, host).catch((e: unknown) => accountMessage(e, user!, host));
    const bare = Jid.of(user!, host).bare;
    await deps.storage.purgeOwner(bare);
    deps.kickUser?.(bare, 'account removed');
    return `user ${user}@${host} unregistered`;
  });
  commands.set('passwd', async (args) => {
    const [user, rawHost, password] = expectArgs(args, ['USER', 'HOST', 'PASSWORD']);
    const host = checkHost(deps, rawHost!);
    await deps.accounts.setPassword(user!, host, password!).catch((e: unknown) => accountMessage(e, user!, host));
    return `password of ${user}@${host} changed`;
  });
  commands.set('users', async (args) => {
    const [rawHost] = expectArgs(args, ['HOST']);
    const host = checkHost(deps, rawHost!);
    return (await deps.accounts.list(host)).join('\n');
  });
  commands.set('import', async (args) => {
    const [file] = expectArgs(args, ['PATH']);
    try {
      // parleyctl sends an absolute path; a relative one is taken from this process's directory.
      const summary = await importPiefxis(path.resolve(file!), {
        accounts: deps.accounts,
        storage: deps.storage,
        hosts: deps.hosts,
        onProgress: deps.importProgress,
      });
      return formatSummary(summary);
    } catch (err) {
      // A problem with the export is the administrator's to fix: reported as is, in one line.
      if (err instanceof ImportError) throw new AdminCommandError(err.message);
      throw err;
    }
  });
  if (deps.status) {
    const status = deps.status;
    commands.set('status', async () => status());
  }
  if (deps.kick) {
    const kick = deps.kick;
    commands.set('kick', async (args) => {
      const [jid] = expectArgs(args, ['JID']);
      let n: number;
      try {
        n = kick(jid!);
      } catch (err) {
        throw new AdminCommandError(`invalid JID '${jid}': ${(err as Error).message}`);
      }
      if (n === 0) throw new AdminCommandError(`${jid} is not connected`);
      return `${n} session(s) of ${jid} disconnected`;
    });
  }
  if (deps.stats) {
    const stats = deps.stats;
    commands.set('stats', async (args) => {
      expectArgs(args, []);
      return stats();
    });
  }
  if (deps.reload) {
    const reload = deps.reload;
    commands.set('reload', async (args) => {
      expectArgs(args, []);
      return reload();
    });
  }
  if (deps.stop) {
    const stop = deps.stop;
    commands.set('stop', async (args) => {
      expectArgs(args, []);
      stop();
      return 'stopping';
    });
  }
  return commands;
}
