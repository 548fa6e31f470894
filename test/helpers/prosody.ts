// Runs Debian's Prosody (0.12) for federation tests: its own config, data, log and certificates
// in a temporary directory, bound to one loopback address of its own.
//
// Prosody has no static routes: it finds a peer through DNS (SRV, then the A record, port 5269).
// Its resolver is libunbound, configured from the global `unbound` table; `hoststxt` names a
// hosts file of our own and `resolvconf` a resolv.conf of our own, so names like `parley.test`
// resolve to the test's loopback address without touching /etc/hosts, and no real DNS server is
// ever asked (`.test` is one of unbound's built-in local zones, RFC 6761, so other names under it
// fail at once).
//
// Prosody is started through a small shell guard that kills it when our end of the guard's stdin
// closes, which happens when stop() is called and also when this process dies in any way, even
// by SIGKILL: a test never leaves a Prosody behind.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { client } from '@xmpp/client';
import { writeTestCerts, type LeafOptions, type TestCertFiles } from './test-ca.js';
import { XMPPJS_TIMEOUT_MS } from './xmppjs.js';

export const PROSODY_BIN = '/usr/bin/prosody';
export const PROSODYCTL_BIN = '/usr/bin/prosodyctl';

/** Why the Prosody tests cannot run here, or undefined when they can. */
export function prosodyMissing(): string | undefined {
  if (!existsSync(PROSODY_BIN) || !existsSync(PROSODYCTL_BIN)) return `Debian's prosody is not installed (${PROSODY_BIN} is missing)`;
  return undefined;
}

/** The part of tap's Test that the helper uses: to clean up and to show Prosody's log on failure. */
export interface TestLike {
  teardown(fn: () => unknown): void;
  comment(...args: unknown[]): void;
  passing(): boolean;
}

export interface ProsodyOptions {
  /** The VirtualHost, e.g. `prosody.test`; a MUC service runs on `conference.<domain>`. */
  domain: string;
  /** The loopback address Prosody's c2s and s2s listeners bind to. */
  ip: string;
  /** Default 15222. */
  c2sPort?: number;
  /** Default 15269. */
  s2sPort?: number;
  /** Name -> address entries for Prosody's resolver (its own hosts file), e.g. `{ 'parley.test': '127.0.0.2' }`. */
  hosts?: Record<string, string>;
  /** `s2s_secure_auth`: true demands a valid certificate from every peer (no dialback). Default false. */
  secureAuth?: boolean;
  /** Prosody's own certificate: signed by the test CA (default) or self-signed. */
  certificate?: LeafOptions;
  /** Accounts created before Prosody starts. */
  users?: Array<{ user: string; password: string }>;
  /** `s2s_timeout` in seconds: how long an outgoing s2s connection may take to be set up. */
  s2sTimeoutSeconds?: number;
  /** Extra Lua for the global section (before the VirtualHost). */
  extraConfig?: string;
  /** Seconds to wait for the listeners to accept connections. */
  startTimeoutSeconds?: number;
  /** When given: Prosody is stopped in its teardown and its log is shown as comments if it failed. */
  t?: TestLike;
}

export interface ProsodyServer {
  domain: string;
  mucDomain: string;
  ip: string;
  c2sPort: number;
  s2sPort: number;
  /** The temporary directory holding config, data, log and certificates. */
  dir: string;
  configFile: string;
  logFile: string;
  certs: TestCertFiles;
  /** The log file plus whatever Prosody wrote to stdout/stderr. */
  logText(): string;
  /** Resolves with the first log line matching, or rejects after timeoutMs with the log's tail. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  register(user: string, password: string): Promise<void>;
  stop(): Promise<void>;
}

const execFileAsync = promisify(execFile);

/** A Lua literal for a config value. JSON string escapes are valid Lua escapes for these values. */
function lua(value: string | number | boolean | string[] | number[]): string {
  if (Array.isArray(value)) return `{ ${value.map((v) => lua(v)).join(', ')} }`;
  if (typeof value === 'string') return JSON.stringify(value);
  return String(value);
}

interface ConfigPaths {
  dataDir: string;
  logFile: string;
  hostsFile: string;
  resolvFile: string;
  certs: TestCertFiles;
}

function configText(o: Required<Pick<ProsodyOptions, 'domain' | 'ip' | 'c2sPort' | 's2sPort'>> & ProsodyOptions, p: ConfigPaths): string {
  const isRoot = process.getuid?.() === 0;
  return [
    '-- Written by the Parley federation tests.',
    `data_path = ${lua(p.dataDir)}`,
    // Prosody refuses to run as root unless told; CI runs as root.
    `run_as_root = ${isRoot}`,
    // debug shows the s2s decisions (SASL EXTERNAL, dialback, resolution) the tests check.
    `log = { { levels = { min = "debug" }, to = "file", filename = ${lua(p.logFile)} } }`,
    `interfaces = ${lua([o.ip])}`,
    `local_interfaces = ${lua([o.ip])}`,
    `c2s_ports = ${lua([o.c2sPort])}`,
    `s2s_ports = ${lua([o.s2sPort])}`,
    'c2s_direct_tls_ports = { }',
    's2s_direct_tls_ports = { }',
    'http_ports = { }',
    'https_ports = { }',
    'modules_enabled = { "roster", "saslauth", "tls", "dialback", "disco", "ping", "presence", "message", "iq" }',
    'authentication = "internal_hashed"',
    // The RFC 7677 minimum: xmpp.js computes SCRAM in JavaScript, and 10000 rounds cost seconds per login.
    'default_iteration_count = 4096',
    'storage = "internal"',
    'allow_registration = false',
    'c2s_require_encryption = true',
    's2s_require_encryption = true',
    `s2s_secure_auth = ${o.secureAuth ?? false}`,
    `s2s_timeout = ${o.s2sTimeoutSeconds ?? 10}`,
    `unbound = { hoststxt = ${lua(p.hostsFile)}, resolvconf = ${lua(p.resolvFile)} }`,
    `ssl = { certificate = ${lua(p.certs.certFile)}, key = ${lua(p.certs.keyFile)}, cafile = ${lua(p.certs.caFile)} }`,
    o.extraConfig ?? '',
    '',
    `VirtualHost ${lua(o.domain)}`,
    '',
    `Component ${lua(`conference.${o.domain}`)} "muc"`,
    '  restrict_room_creation = false',
    // New rooms open at once: a locked room would wait for its creator's configuration form.
    '  muc_room_locking = false',
    '',
  ].join('\n');
}

/**
 * The guard: starts Prosody in the foreground, prints its pid, and kills it when its stdin reaches
 * EOF (our write end closed: stop(), or this process died). It exits with Prosody's status.
 */
const GUARD = [
  'exec 3<&0',
  `"$0" -F --config "$1" </dev/null &`,
  'pid=$!',
  'echo "prosody-pid $pid"',
  '( read -r _ <&3; kill -TERM "$pid" 2>/dev/null ) 3<&3 &',
  'watcher=$!',
  'exec 3<&-',
  'wait "$pid"; status=$?',
  'kill "$watcher" 2>/dev/null',
  'exit "$status"',
].join('\n');

/** Every Prosody still running, so an exiting process can kill them even without the guard's help. */
const running = new Set<{ kill(): void }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const r of running) r.kill();
  });
}

/** Does something accept TCP connections there? */
export function canConnect(ip: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: ip, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tail(text: string, lines = 60): string {
  return text.split('\n').slice(-lines).join('\n');
}

export async function startProsody(options: ProsodyOptions): Promise<ProsodyServer> {
  const missing = prosodyMissing();
  if (missing) throw new Error(missing);
  // Not the standard ports: a server listening on 5222 or 5269 on every address (a Parley
  // started with its defaults, a system Prosody) would keep these from binding. Peers reach this
  // Prosody through static routes, so nothing needs it on 5269.
  const o = { c2sPort: 15222, s2sPort: 15269, ...options };
  const dir = mkdtempSync(path.join(tmpdir(), 'parley-prosody-'));
  const dataDir = path.join(dir, 'data');
  mkdirSync(dataDir);
  const paths: ConfigPaths = {
    dataDir,
    logFile: path.join(dir, 'prosody.log'),
    hostsFile: path.join(dir, 'hosts'),
    resolvFile: path.join(dir, 'resolv.conf'),
    certs: writeTestCerts(path.join(dir, 'certs'), [o.domain, `conference.${o.domain}`], o.certificate),
  };
  const hostLines = Object.entries(o.hosts ?? {}).map(([name, ip]) => `${ip} ${name}`);
  writeFileSync(paths.hostsFile, [`${o.ip} ${o.domain} conference.${o.domain}`, ...hostLines, ''].join('\n'));
  // A nameserver libunbound will not query (do-not-query-localhost), so nothing leaves the machine.
  writeFileSync(paths.resolvFile, 'nameserver 127.0.0.1\n');
  const configFile = path.join(dir, 'prosody.cfg.lua');
  writeFileSync(configFile, configText(o, paths));

  let output = '';
  const logText = () => {
    let log = '';
    try {
      log = readFileSync(paths.logFile, 'utf8');
    } catch {
      // Not written yet.
    }
    return output ? `${log}\n--- prosody stdout/stderr ---\n${output}` : log;
  };

  const register = async (user: string, password: string) => {
    try {
      await execFileAsync(PROSODYCTL_BIN, ['--config', configFile, 'register', user, o.domain, password], { timeout: 30_000 });
    } catch (err) {
      const e = err as Error & { stdout?: string; stderr?: string };
      throw new Error(`prosodyctl register ${user}@${o.domain} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`);
    }
  };
  const removeDir = () => rmSync(dir, { recursive: true, force: true });
  try {
    for (const u of o.users ?? []) await register(u.user, u.password);
  } catch (err) {
    removeDir();
    throw err;
  }

  installExitHook();
  const child: ChildProcess = spawn('/bin/sh', ['-c', GUARD, PROSODY_BIN, configFile], { stdio: ['pipe', 'pipe', 'pipe'] });
  let prosodyPid: number | undefined;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let hasExited = false;
  void exited.then(() => {
    hasExited = true;
  });
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const m = /prosody-pid (\d+)/.exec(chunk);
    if (m && prosodyPid === undefined) prosodyPid = Number(m[1]);
    output += chunk.replace(/prosody-pid \d+\n?/, '');
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk;
  });
  const entry = {
    kill() {
      // Synchronous, for the exit hook: SIGKILL both, the guard could not act in time.
      for (const pid of [prosodyPid, child.pid]) {
        if (pid === undefined) continue;
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    },
  };
  running.add(entry);

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      child.stdin!.end();
      const timer = setTimeout(() => entry.kill(), 5_000);
      await exited;
      clearTimeout(timer);
      running.delete(entry);
      removeDir();
    })());

  const waitForLog = async (pattern: RegExp, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = logText().split('\n').find((l) => pattern.test(l));
      if (line !== undefined) return line;
      if (Date.now() > deadline) throw new Error(`Prosody logged nothing matching ${pattern} within ${timeoutMs} ms; its log ends:\n${tail(logText())}`);
      await sleep(100);
    }
  };

  const startDeadline = Date.now() + (o.startTimeoutSeconds ?? 20) * 1000;
  try {
    for (;;) {
      if (hasExited) throw new Error(`Prosody exited during start-up`);
      if ((await canConnect(o.ip, o.c2sPort)) && (await canConnect(o.ip, o.s2sPort))) break;
      if (Date.now() > startDeadline) throw new Error(`Prosody did not listen on ${o.ip}:${o.c2sPort} and :${o.s2sPort} in time`);
      await sleep(100);
    }
  } catch (err) {
    const log = tail(logText());
    await stop();
    throw new Error(`${(err as Error).message}; its log ends:\n${log}`);
  }

  const server: ProsodyServer = {
    domain: o.domain,
    mucDomain: `conference.${o.domain}`,
    ip: o.ip,
    c2sPort: o.c2sPort,
    s2sPort: o.s2sPort,
    dir,
    configFile,
    logFile: paths.logFile,
    certs: paths.certs,
    logText,
    waitForLog,
    register,
    stop,
  };
  if (o.t) {
    const t = o.t;
    t.teardown(async () => {
      if (!t.passing()) t.comment(`Prosody (${o.domain}) log:\n${logText()}`);
      await stop();
    });
  }
  return server;
}

export type XmppClient = ReturnType<typeof client>;
export type XmppStanza = Parameters<Parameters<XmppClient['on']>[1]>[0];

/**
 * An @xmpp/client for a Prosody user (STARTTLS on Prosody's c2s port), not yet started. xmpp.js
 * takes no TLS options, so it cannot be given the test CA: a test sets
 * NODE_TLS_REJECT_UNAUTHORIZED=0 and checks Prosody's certificate itself where that matters.
 */
export function prosodyClient(prosody: ProsodyServer, user: string, password: string, resource = 'prosody'): XmppClient {
  const x = client({ service: `xmpp://${prosody.ip}:${prosody.c2sPort}`, domain: prosody.domain, username: user, password, resource, timeout: XMPPJS_TIMEOUT_MS });
  x.on('error', () => undefined);
  return x;
}

/** The next stanza the client receives that matches, from now on; rejects after timeoutMs. */
export function nextStanza(x: XmppClient, match: (st: XmppStanza) => boolean, timeoutMs = 15_000): Promise<XmppStanza> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      x.removeListener('stanza', listener);
      reject(new Error(`no matching stanza within ${timeoutMs} ms`));
    }, timeoutMs);
    const listener = (st: XmppStanza) => {
      if (!match(st)) return;
      clearTimeout(timer);
      x.removeListener('stanza', listener);
      resolve(st);
    };
    x.on('stanza', listener);
  });
}
