// Child processes of the bench (the server under test and the echo baseline): start, wait until
// they accept connections, read their memory and CPU from /proc, and make sure none outlives the
// bench, whether it ends normally, fails, or is interrupted.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const live = new Set<ChildProcess>();

/** SIGKILL for every child still running; synchronous so it also works in an 'exit' handler. */
export function killAllChildren(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  live.clear();
}
process.on('exit', killAllChildren);

// Linux reports CPU times in clock ticks; USER_HZ is 100 on every mainstream architecture.
const TICKS_PER_SECOND = 100;

export interface GcInfo {
  collected: boolean;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

export class NodeChild {
  private readonly tail: string[] = [];
  readonly exited: Promise<number | null>;
  private exitInfo: string | undefined;
  private problems = 0;
  private lastProblem = '';

  private constructor(readonly name: string, private readonly proc: ChildProcess, readonly port: number) {
    live.add(proc);
    const keep = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.trim()) continue;
        // Parley logs JSON lines at level warn and above here; each one may explain a figure.
        if (line.includes('"level":"warn"') || line.includes('"level":"error"')) {
          this.problems++;
          this.lastProblem = line;
        }
        this.tail.push(line);
        if (this.tail.length > 40) this.tail.shift();
      }
    };
    proc.stdout?.on('data', keep);
    proc.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        live.delete(proc);
        this.exitInfo = signal ? `signal ${signal}` : `code ${code}`;
        resolve(code);
      });
    });
  }

  /**
   * Starts `node <script> <args>` from the repository root with --expose-gc and the GC agent
   * preloaded, and resolves once `port` accepts TCP connections.
   */
  static async start(o: {
    name: string;
    root: string;
    script: string;
    args: string[];
    port: number;
    cpuProfDir?: string;
    startTimeoutMs?: number;
  }): Promise<NodeChild> {
    const nodeArgs = ['--expose-gc', '--import', 'tsx', '--import', './' + path.join('bench', 'gc-agent.ts')];
    // Default file names: they carry the pid and thread id, and tsx's loader thread writes a
    // profile of its own that must not overwrite the main thread's.
    if (o.cpuProfDir) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', o.cpuProfDir);
    const proc = spawn(process.execPath, [...nodeArgs, o.script, ...o.args], {
      cwd: o.root,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { ...process.env, PARLEY_CONFIG: undefined },
    });
    const child = new NodeChild(o.name, proc, o.port);
    try {
      await child.waitForPort(o.startTimeoutMs ?? 60_000);
    } catch (err) {
      await child.stop();
      throw err;
    }
    return child;
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  output(): string {
    return this.tail.join('\n');
  }

  /** A note on the warnings and errors the process logged, if it logged any. */
  logNote(): string | undefined {
    if (this.problems === 0) return undefined;
    const last = this.lastProblem.length > 200 ? this.lastProblem.slice(0, 200) + '…' : this.lastProblem;
    return `${this.name} logged ${this.problems} warning/error line(s), the last: ${last}`;
  }

  private async waitForPort(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      // The last line is usually the reason (parley prints one line on a boot error); the
      // first line of the message is what the results table shows.
      if (!this.running) throw new Error(`${this.name} exited during start-up (${this.exitInfo}): ${this.tail.at(-1) ?? 'no output'}\n${this.output()}`);
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect({ port: this.port, host: '127.0.0.1' });
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`${this.name} did not listen on port ${this.port} within ${timeoutMs} ms:\n${this.output()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** VmRSS of the process in KiB, as the kernel reports it. */
  rssKb(): number {
    const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    if (!m) throw new Error(`no VmRSS in /proc/${this.pid}/status`);
    return Number(m[1]);
  }

  /** User + system CPU time consumed so far, in milliseconds. */
  cpuMs(): number {
    const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may itself hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
  }

  /** Asks the GC agent in the child for a full collection. */
  gc(timeoutMs = 15_000): Promise<GcInfo> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.proc.off('message', onMessage);
        reject(new Error(`${this.name} did not answer the GC request`));
      }, timeoutMs);
      const onMessage = (msg: unknown) => {
        const m = msg as { type?: string } & GcInfo;
        if (m?.type !== 'gc-done') return;
        clearTimeout(timer);
        this.proc.off('message', onMessage);
        resolve({ collected: m.collected, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers });
      };
      this.proc.on('message', onMessage);
      this.proc.send({ type: 'gc' });
    });
  }

  /** SIGTERM (the server stops cleanly and a CPU profile gets written), SIGKILL after 15 s. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 15_000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** A port the system just handed out on loopback; the child binds it right after. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}
