// Everything the scenarios share: a temporary directory with a certificate and a data directory,
// the server config, the users (created straight in the embedded store before any server runs),
// and starters for the server and the echo baseline as separate processes.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import type { AccountRecord } from '../lib/accounts.js';
import { openCoreServices } from '../lib/bootstrap.js';
import { parseConfig } from '../lib/config/load.js';
import { generateSelfSigned } from '../lib/net/certs.js';
import { builtinPlugins } from '../plugins/index.js';
import { SaltedPasswordCache } from './conn.js';
import { UsageError } from './options.js';
import { NodeChild, freePort } from './procs.js';
import { runPool } from './stats.js';

export const HOST = 'localhost';
const PASSWORD = 'bench-password';
// RFC 7677's minimum and the smallest the config accepts: what a fast deployment would choose.
const SCRAM_ITERATIONS = 4096;

export type Modules = Record<string, unknown>;

export interface BenchEnv {
  root: string;
  dir: string;
  dataDir: string;
  certFile: string;
  modules: Modules;
  users: string[];
  password: string;
  keys: SaltedPasswordCache;
  cpuProfDir: string | undefined;
  log(line: string): void;
}

/** Module names the server knows (its built-in catalog). */
export function catalogHas(name: string): boolean {
  return builtinPlugins.has(name);
}

/**
 * The modules the server runs during the bench: those of the shipped config (what a fresh
 * install runs), or the names given with --modules. Ping is always added: the stall probe uses it.
 */
export function benchModules(root: string, only: string[] | undefined): Modules {
  let modules: Modules;
  if (only) {
    modules = Object.fromEntries(only.map((m) => [m, {}]));
  } else {
    const shipped = YAML.parse(readFileSync(path.join(root, 'config', 'parley.yml'), 'utf8')) as { modules?: Modules } | null;
    modules = { ...(shipped?.modules ?? {}) };
  }
  if (!('ping' in modules) || modules.ping === false) modules.ping = {};
  for (const name of Object.keys(modules)) {
    if (!catalogHas(name)) throw new UsageError(`module '${name}' is not in the server's catalog (plugins/index.ts)`);
  }
  return modules;
}

export function configText(env: Pick<BenchEnv, 'dataDir' | 'certFile'>, port: number, modules: Modules, httpPort?: number): string {
  // JSON is valid YAML: it quotes the temporary paths and module options without a YAML writer.
  return [
    `hosts: [${HOST}]`,
    `data_dir: ${JSON.stringify(env.dataDir)}`,
    'log: { level: warn, format: json }',
    `certfiles: [${JSON.stringify(env.certFile)}]`,
    'listen:',
    `  - port: ${port}`,
    '    ip: 127.0.0.1',
    '    module: c2s',
    '    starttls_required: true',
    // All load comes from one address; the per-IP cap (100 by default) would refuse it.
    '    max_connections: 200000',
    '    max_connections_per_ip: 200000',
    // Plain HTTP on loopback for the upload scenario: the figure is the upload path, and the
    // same TLS cost on both sides would only blur it (the c2s scenarios already measure TLS).
    ...(httpPort === undefined ? [] : [`  - port: ${httpPort}`, '    ip: 127.0.0.1', '    module: http', '    tls: false']),
    'storage: { driver: embedded }',
    `auth: { scram_iterations: ${SCRAM_ITERATIONS} }`,
    `modules: ${JSON.stringify(modules)}`,
    '',
  ].join('\n');
}

export async function prepare(o: {
  root: string;
  userCount: number;
  modules: Modules;
  cpuProfDir?: string;
  log(line: string): void;
}): Promise<BenchEnv> {
  const dir = mkdtempSync(path.join(tmpdir(), 'parley-bench-'));
  const env: BenchEnv = {
    root: o.root,
    dir,
    dataDir: path.join(dir, 'data'),
    certFile: path.join(dir, 'cert.pem'),
    modules: o.modules,
    users: [],
    password: PASSWORD,
    keys: new SaltedPasswordCache(PASSWORD),
    cpuProfDir: o.cpuProfDir,
    log: o.log,
  };
  // One certificate for both servers, made by Parley's own generator (RSA 2048, like a fresh
  // install's), so the TLS cost per handshake is the same on both sides of the comparison.
  const { certPem, keyPem } = await generateSelfSigned([HOST], new Date());
  writeFileSync(env.certFile, certPem + keyPem, { mode: 0o600 });

  const configFile = path.join(dir, 'setup.yml');
  const text = configText(env, 1, o.modules);
  writeFileSync(configFile, text);
  const t0 = Date.now();
  const { storage, accounts } = await openCoreServices(parseConfig(text, configFile).core);
  try {
    env.users = Array.from({ length: o.userCount }, (_, i) => `bench${i}`);
    const records = storage.map<AccountRecord>('accounts');
    // PBKDF2 runs on the thread pool, so a few registrations at once use both cores.
    await runPool(env.users.length, 8, async (i) => {
      const user = env.users[i]!;
      await accounts.register(user, HOST, PASSWORD);
      // Warm the client-side key cache with the salt the server will send for this user.
      const cred = (await records.get(HOST, user))?.scram['SHA-1'];
      if (!cred) throw new Error(`no SCRAM-SHA-1 credential stored for ${user}`);
      await env.keys.get(cred.salt, cred.iterations);
    });
  } finally {
    await storage.close();
  }
  o.log(`created ${env.users.length} users (SCRAM, ${SCRAM_ITERATIONS} iterations) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return env;
}

export function cleanup(env: BenchEnv): void {
  rmSync(env.dir, { recursive: true, force: true });
}

/** Parley as its own process: `node bin/parley.js --config <temp config>`. */
export async function startParley(env: BenchEnv, modules: Modules = env.modules, httpPort?: number): Promise<NodeChild> {
  const port = await freePort();
  const configFile = path.join(env.dir, `parley-${port}.yml`);
  writeFileSync(configFile, configText(env, port, modules, httpPort));
  return NodeChild.start({
    name: 'parley',
    root: env.root,
    script: path.join('bin', 'parley.js'),
    args: ['--config', configFile],
    port,
    cpuProfDir: env.cpuProfDir,
  });
}

export async function startEcho(env: BenchEnv): Promise<NodeChild> {
  return startBaseline(env, 'echo', 'echo-server.ts');
}

/** The MUC baseline: a TLS server that broadcasts each message to every connection. */
export async function startFanout(env: BenchEnv): Promise<NodeChild> {
  return startBaseline(env, 'fanout', 'fanout-server.ts');
}

/** The upload baseline: a plain HTTP server that streams each PUT body into a file of `dir`. */
export async function startSink(env: BenchEnv, dir: string): Promise<NodeChild> {
  return startBaseline(env, 'sink', 'sink-server.ts', dir);
}

async function startBaseline(env: BenchEnv, name: string, script: string, arg = env.certFile): Promise<NodeChild> {
  const port = await freePort();
  return NodeChild.start({
    name,
    root: env.root,
    script: path.join('bench', script),
    args: [String(port), arg],
    port,
  });
}
