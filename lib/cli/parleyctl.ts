// `parleyctl [--config PATH] COMMAND ARGS...` (ejabberdctl style). With a running server the
// command goes through its admin socket, so the server's caches and sessions stay right; without
// one, the same command runs here directly on the storage.
import path from 'node:path';
import { createAdminCommands } from '../admin/commands.js';
import { progressBar } from '../admin/import-progress.js';
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
  import PATH                   import accounts and rosters from XEP-0227 (PIEFXIS) files:
                                one file, or a directory (ejabberd, Prosody exports)
  status                        is the server running?
  kick JID                      disconnect a full JID, or every session of a bare JID
  stats                         sessions, stanzas in/out, per-session queue lengths
  reload                        re-read the config file without dropping sessions
  stop                          stop the server`;

/** How long parleyctl waits for a running server to finish an import. */
const IMPORT_TIMEOUT_MS = 12 * 60 * 60 * 1000;

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
  // The server resolves nothing against our working directory, so the import path goes absolute.
  if (command === 'import' && rest[0] !== undefined) rest[0] = path.resolve(rest[0]);
  const bar = command === 'import' ? progressBar(process.stderr) : undefined;
  // An import by the running server reports nothing until it is done, nor does the first pass of
  // one done here (checking the whole export): say at least what is going on.
  bar?.note('reading the export...');
  // An import of many users runs for minutes, and the socket answers only at the end, so the
  // wait is long: it only guards against a server that stopped answering.
  const remote = await callAdmin(socketPath, command, rest, command === 'import' ? IMPORT_TIMEOUT_MS : undefined);
  if (remote !== 'not-running') {
    bar?.done();
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
  const services = await openCoreServices(core).catch((err: unknown) => {
    bar?.done();
    throw err;
  });
  try {
    const commands = createAdminCommands({
      accounts: services.accounts, storage: services.storage, hosts: core.hosts, importProgress: bar?.update,
    });
    const run = commands.get(command);
    if (!run) throw new UsageError(`unknown command '${command}' (see parleyctl help)`);
    const output = await run(rest);
    bar?.done();
    if (output) process.stdout.write(output + '\n');
  } finally {
    bar?.done();
    await services.storage.close();
  }
}

main().catch((err: unknown) => fail('parleyctl', err instanceof AdminCommandError ? new Error(err.message) : err));
