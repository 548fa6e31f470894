// `parley [--config PATH]`: runs the server until SIGINT/SIGTERM.
import { loadConfig } from '../config/load.js';
import { Server } from '../server.js';
import { fail, parseArgs } from './args.js';

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.rest.length) throw new Error(`unexpected argument '${args.rest[0]}' (usage: parley [--config PATH])`);
  const config = await loadConfig(args.config);
  const server = await Server.start({ config });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    server.log.info('stopping', { signal });
    server.stop().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // SIGHUP re-reads the config (ejabberd/Prosody convention); a bad config is logged and ignored.
  process.on('SIGHUP', () => {
    server.reloadSafely().catch(() => undefined);
  });
  server.onStopped = () => process.exit(0);
}

main().catch((err: unknown) => fail('parley', err));
