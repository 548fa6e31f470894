// `npm run bench`: the DESIGN §10 scenarios against Parley running as its own process, each
// next to a baseline measured in the same run (a plain Node TLS echo server), so figures taken
// on a busy shared machine can still be compared as ratios. See bench/README.md.
import { mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { USAGE, UsageError, parseOptions, type Options, type ScenarioName } from './options.js';
import { killAllChildren } from './procs.js';
import { table, type ScenarioResult } from './report.js';
import { idle } from './scenarios/idle.js';
import { logins } from './scenarios/logins.js';
import { messages } from './scenarios/messages.js';
import { muc } from './scenarios/muc.js';
import { offline } from './scenarios/offline.js';
import { upload } from './scenarios/upload.js';
import { benchModules, cleanup, prepare, type BenchEnv } from './setup.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const log = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`);
};

type Scenario = (env: BenchEnv, o: Options, roster: boolean) => Promise<ScenarioResult>;
const scenarios: Record<ScenarioName, Scenario> = { idle, logins, messages, offline, muc, upload };

/** Users the selected scenarios need; each is created (with PBKDF2) before the server starts. */
function usersNeeded(o: Options): number {
  let n = 2;
  if (o.only.includes('idle')) n = Math.max(n, o.sessions + 50);
  if (o.only.includes('messages')) n = Math.max(n, 2 * o.pairs + 1);
  if (o.only.includes('offline')) n = Math.max(n, 2 * o.offlinePairs);
  if (o.only.includes('muc')) n = Math.max(n, ...o.mucOccupants);
  // Logins cycle through the users; a few hundred distinct ones keep lookups from all hitting one record.
  if (o.only.includes('logins')) n = Math.max(n, Math.min(o.logins, 500));
  return n;
}

function machine() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${os.type()} ${os.release()}`,
    loadAverageAtStart: os.loadavg().map((v) => Number(v.toFixed(2))),
  };
}

async function main(): Promise<number> {
  let o: Options | 'help';
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`bench: ${(err as Error).message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (o === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const opts = o;
  const info = machine();
  const started = new Date();
  let env: BenchEnv | undefined;

  // However the run ends, no server or echo process may outlive it.
  const abort = (why: string, code: number) => {
    log(why);
    killAllChildren();
    if (env && !opts.keep) cleanup(env);
    process.exit(code);
  };
  process.on('SIGINT', () => abort('interrupted', 130));
  process.on('SIGTERM', () => abort('terminated', 143));
  setTimeout(() => abort(`aborted: the run exceeded --max-time (${opts.maxTimeMs / 1000} s)`, 1), opts.maxTimeMs).unref();

  let modules: ReturnType<typeof benchModules>;
  try {
    modules = benchModules(root, opts.modules);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench: ${err.message}\n`);
    return 2;
  }
  const roster = modules.roster !== undefined && modules.roster !== false;
  if (opts.cpuProf) mkdirSync(opts.cpuProf, { recursive: true });
  log(`${info.cpus} CPU(s), Node ${info.node}, load average ${info.loadAverageAtStart.join(' ')}; modules: ${Object.keys(modules).join(', ')}`);

  const results: ScenarioResult[] = [];
  try {
    env = await prepare({ root, userCount: usersNeeded(opts), modules, cpuProfDir: opts.cpuProf, log });
    for (const name of opts.only) {
      const t0 = Date.now();
      try {
        results.push(await scenarios[name](env, opts, roster));
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        log(`${name} failed: ${message}`);
        results.push({ name, status: 'failed', note: message.split('\n')[0], rows: [], details: { error: message } });
      }
      log(`${name}: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  } finally {
    killAllChildren();
    if (env) {
      if (opts.keep) log(`kept ${env.dir}`);
      else cleanup(env);
    }
  }

  const seconds = (Date.now() - started.getTime()) / 1000;
  const report = `Parley benchmark — ${info.cpus} CPU(s) ${info.cpuModel}, Node ${info.node}, load average at start ${info.loadAverageAtStart.join(' ')}, ${seconds.toFixed(0)} s\n\n${table(results)}\n`;
  if (opts.json) {
    // The table still reaches a person watching, on stderr; stdout stays parseable.
    process.stderr.write(report);
    const { json: _json, ...options } = opts;
    process.stdout.write(JSON.stringify({ started: started.toISOString(), seconds, machine: info, modules: Object.keys(modules), options, results }, null, 2) + '\n');
  } else {
    process.stdout.write(report);
  }
  return results.some((r) => r.status === 'failed') ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    killAllChildren();
    process.exit(1);
  },
);
