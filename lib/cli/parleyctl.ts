// `parleyctl [--config PATH] COMMAND ARGS...` (ejabberdctl style). With a running server the
// command goes through its admin socket, so the server's caches and sessions stay right; without
// one, the same command runs here directly on the storage.
import path from 'node:path';
import { createAdminCommands } from '../admin/commands.js';
import { AdminCommandError, callAdmin } from '../admin/socket.js';
import { openCoreServices } from '../bootstrap.js';
import { loadConfig } from '../config/load.js';
import { fail, parseArgs, UsageError } from './args.js';

const USAGE = `usage: parleyctl [--config PATH] COMMAND [ARGS]
commands:
  register USER HOST PASSWORD   create an account
  unregister USER HOST          delete an account and its data
  passwd USER HOST PASSWORD     change a password
  users HOST                    list accounts
  status                        is the server running?
  kick JID                      disconnect a full JID, or every session of a bare JID
  stats                         sessions, stanzas in/out, per-session queue lengths
  reload                        re-read the config file without dropping sessions
  stop                          stop the server`;

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const [command, ...rest] = args.rest;
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(USAGE + '\n');
    if (!command) process.exit(2);
    return;
  }
  const config = await loadConfig(args.config);
  const core = config.core;
  const socketPath = core.admin.socket ?? path.join(core.data_dir, 'parleyctl.sock');
  const remote = await callAdmin(socketPath, command, rest);
  if (remote !== 'not-running') {
    if (!remote.ok) throw new Error(remote.error ?? 'command failed');
    if (remote.output) process.stdout.write(remote.output + '\n');
    return;
  }
  if (command === 'status') {
    process.stdout.write('not running\n');
    process.exit(3);
  }
  if (['kick', 'stats', 'reload', 'stop'].includes(command)) {
    throw new Error(`the server is not running (no admin socket at ${socketPath})`);
  }
  const services = await openCoreServices(core);
  try {
    const commands = createAdminCommands({ accounts: services.accounts, storage: services.storage, hosts: core.hosts });
    const run = commands.get(command);
    if (!run) throw new UsageError(`unknown command '${command}' (see parleyctl help)`);
    const output = await run(rest);
    if (output) process.stdout.write(output + '\n');
  } finally {
    await services.storage.close();
  }
}

main().catch((err: unknown) => fail('parleyctl', err instanceof AdminCommandError ? new Error(err.message) : err));
