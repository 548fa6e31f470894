// Starts a real server in-process on ephemeral ports with a temporary data directory.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseConfig } from '../../lib/config/load.js';
import { silentLogger, createLogger, type Logger } from '../../lib/log.js';
import type { PluginDefinition } from '../../lib/plugin/types.js';
import { Server } from '../../lib/server.js';

export interface TestServer {
  server: Server;
  c2sPort: number;
  httpPort: number;
  /** The ports of every listener of a module, in config order (s2s, component, ...). */
  ports(module: string): number[];
  dataDir: string;
  configFile: string;
  register(user: string, password: string, host?: string): Promise<void>;
  close(): Promise<void>;
}

export interface TestServerOptions {
  hosts?: string[];
  /** Extra YAML appended at the top level (e.g. a `limits:` block). */
  yaml?: string;
  /** YAML of the `modules:` map (indented by the caller as top-level entries). */
  modules?: string;
  plugins?: PluginDefinition<any>[];
  log?: Logger;
  dataDir?: string;
  starttlsRequired?: boolean;
  /** Extra lines of the `auth:` section, indented by two spaces. */
  auth?: string;
  /** Extra `listen:` entries as YAML list items indented by two spaces (s2s, component, ...). */
  listen?: string;
}

export function testConfigText(dataDir: string, o: TestServerOptions = {}): string {
  const hosts = o.hosts ?? ['localhost'];
  return [
    `hosts: [${hosts.join(', ')}]`,
    `data_dir: ${JSON.stringify(dataDir)}`,
    'listen:',
    '  - port: 0',
    '    ip: 127.0.0.1',
    '    module: c2s',
    `    starttls_required: ${o.starttlsRequired ?? true}`,
    '  - port: 0',
    '    ip: 127.0.0.1',
    '    module: http',
    '    tls: false',
    o.listen ?? '',
    // Tests only need the minimum iteration count; it keeps logins fast.
    'auth:',
    '  scram_iterations: 4096',
    o.auth ?? '',
    'modules:',
    o.modules ?? '  disco: {}\n  ping: {}\n  version: {}\n  time: {}',
    o.yaml ?? '',
    // Outgoing federation would look up made-up remote domains in the real DNS; tests that
    // federate configure their own `s2s:` section with static routes.
    /^s2s:/m.test(o.yaml ?? '') ? '' : 's2s:\n  enabled: false',
  ].join('\n');
}

export async function startTestServer(o: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = o.dataDir ?? mkdtempSync(path.join(tmpdir(), 'parley-test-'));
  const configFile = path.join(dataDir, 'parley.yml');
  const text = testConfigText(dataDir, o);
  writeFileSync(configFile, text);
  const config = parseConfig(text, configFile);
  const log = o.log ?? (process.env.PARLEY_TEST_LOG ? createLogger({ level: 'debug', format: 'pretty' }) : silentLogger);
  const server = await Server.start({ config, plugins: o.plugins, log });
  const port = (module: string) => server.listeners.find((l) => l.module === module)?.port ?? 0;
  return {
    server,
    c2sPort: port('c2s'),
    httpPort: port('http'),
    ports: (module) => server.listeners.filter((l) => l.module === module).map((l) => l.port),
    dataDir,
    configFile,
    register: (user, password, host = (o.hosts ?? ['localhost'])[0]!) => server.accounts.register(user, host, password),
    async close() {
      await server.stop();
      if (!o.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
