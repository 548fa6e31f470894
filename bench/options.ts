// Command line of `npm run bench -- [options]`. Every scenario is bounded by a count or a
// duration, and the whole run by --max-time, so the bench always ends by itself.
import path from 'node:path';
import { parseArgs } from 'node:util';

export const SCENARIOS = ['idle', 'logins', 'messages', 'offline', 'muc', 'upload'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface Options {
  only: ScenarioName[];
  sessions: number;
  logins: number;
  concurrency: number;
  pairs: number;
  window: number;
  durationMs: number;
  warmupMs: number;
  messages: number;
  bodyBytes: number;
  /** Address messages to the receiver's bare JID (as chat clients do) or to its bound full JID. */
  address: 'bare' | 'full';
  offlineMessages: number;
  offlinePairs: number;
  /** Room sizes of the MUC fan-out, one measurement each. */
  mucOccupants: number[];
  mucSenders: number;
  mucWindow: number;
  /** Sizes of the upload throughput PUTs, in MiB. */
  uploadSizes: number[];
  uploadRepeat: number;
  settleMs: number;
  modules: string[] | undefined;
  cpuProf: string | undefined;
  json: boolean;
  keep: boolean;
  maxTimeMs: number;
}

export const USAGE = `usage: npm run bench -- [options]

  --only LIST            scenarios to run, comma-separated: ${SCENARIOS.join(',')} (default: all)
  --sessions N           idle: authenticated TLS sessions held open (default 2000)
  --logins N             logins: logins measured (default 2000)
  --concurrency C        logins in progress at once, in idle and logins (default 50)
  --pairs P              messages: sender/receiver pairs (default 50)
  --window W             messages: messages in flight per pair (default 10)
  --duration S           messages, muc: measured seconds (default 10; muc: per room size and side)
  --warmup S             messages, muc: unmeasured seconds first (default 2)
  --messages N           messages: also stop after N measured messages (default: no count limit)
  --body-bytes B         messages: body length in bytes, timestamp included (default 64)
  --address bare|full    messages: send to the receiver's bare JID (default, as chat clients do) or full JID
  --offline-messages M   offline: messages spooled and delivered in each run (default 5000)
  --offline-pairs P      offline: senders, each to its own offline recipient, in the concurrent run (default 50)
  --muc-occupants LIST   muc: room sizes, comma-separated (default 100,1000); each occupant is a session
  --muc-senders N        muc: occupants that send (default 2)
  --muc-window W         muc: messages per sender not yet delivered to every occupant (default 4)
  --upload-sizes LIST    upload: PUT sizes in MiB, comma-separated (default 1,8,64)
  --upload-repeat N      upload: PUTs per size and per test image (default 3)
  --settle S             idle: seconds to wait before each RSS reading (default 3)
  --modules LIST         modules the server runs (default: those of config/parley.yml; ping is always added)
  --cpu-prof DIR         write a V8 CPU profile of each server process into DIR (see bench/cpu-top.ts)
  --max-time S           abort everything after S seconds (default 600)
  --json                 print the results as JSON on stdout (progress and the table go to stderr)
  --keep                 keep the temporary directory (config, data, certificate)
  --help                 this text
`;

export class UsageError extends Error {}

function positive(name: string, raw: string | undefined, def: number, { allowZero = false, integer = true } = {}): number {
  if (raw === undefined) return def;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < 0 || (!allowZero && v === 0) || (integer && !Number.isInteger(v))) {
    throw new UsageError(`--${name} needs a ${integer ? 'whole ' : ''}number${allowZero ? '' : ' above 0'}, got '${raw}'`);
  }
  return v;
}

export function parseOptions(argv: string[]): Options | 'help' {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      only: { type: 'string' },
      sessions: { type: 'string' },
      logins: { type: 'string' },
      concurrency: { type: 'string' },
      pairs: { type: 'string' },
      window: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      messages: { type: 'string' },
      'body-bytes': { type: 'string' },
      address: { type: 'string' },
      'offline-messages': { type: 'string' },
      'offline-pairs': { type: 'string' },
      'muc-occupants': { type: 'string' },
      'muc-senders': { type: 'string' },
      'muc-window': { type: 'string' },
      'upload-sizes': { type: 'string' },
      'upload-repeat': { type: 'string' },
      settle: { type: 'string' },
      modules: { type: 'string' },
      'cpu-prof': { type: 'string' },
      'max-time': { type: 'string' },
      json: { type: 'boolean' },
      keep: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  let only: ScenarioName[] = [...SCENARIOS];
  if (values.only !== undefined) {
    const names = values.only.split(',').map((s) => s.trim()).filter(Boolean);
    const unknown = names.filter((n) => !(SCENARIOS as readonly string[]).includes(n));
    if (unknown.length || names.length === 0) throw new UsageError(`--only takes ${SCENARIOS.join(', ')}; got '${values.only}'`);
    only = SCENARIOS.filter((s) => names.includes(s));
  }
  const bodyBytes = positive('body-bytes', values['body-bytes'], 64);
  // The body carries a timestamp of up to 20 characters; shorter bodies could not hold it.
  if (bodyBytes < 24) throw new UsageError('--body-bytes must be at least 24 (the body carries the send timestamp)');
  const address = values.address ?? 'bare';
  if (address !== 'bare' && address !== 'full') throw new UsageError(`--address takes bare or full, got '${address}'`);
  const mucOccupants = (values['muc-occupants'] ?? '100,1000').split(',').map((v) => positive('muc-occupants', v.trim(), 0));
  const mucSenders = positive('muc-senders', values['muc-senders'], 2);
  if (mucOccupants.some((n) => n < mucSenders)) throw new UsageError('--muc-occupants: every room needs at least --muc-senders occupants');
  return {
    only,
    sessions: positive('sessions', values.sessions, 2000),
    logins: positive('logins', values.logins, 2000),
    concurrency: positive('concurrency', values.concurrency, 50),
    pairs: positive('pairs', values.pairs, 50),
    window: positive('window', values.window, 10),
    durationMs: positive('duration', values.duration, 10, { integer: false }) * 1000,
    warmupMs: positive('warmup', values.warmup, 2, { allowZero: true, integer: false }) * 1000,
    messages: positive('messages', values.messages, 0, { allowZero: true }),
    bodyBytes,
    address,
    offlineMessages: positive('offline-messages', values['offline-messages'], 5000),
    offlinePairs: positive('offline-pairs', values['offline-pairs'], 50),
    mucOccupants,
    mucSenders,
    mucWindow: positive('muc-window', values['muc-window'], 4),
    uploadSizes: (values['upload-sizes'] ?? '1,8,64').split(',').map((v) => positive('upload-sizes', v.trim(), 0, { integer: false })),
    uploadRepeat: positive('upload-repeat', values['upload-repeat'], 3),
    settleMs: positive('settle', values.settle, 3, { allowZero: true, integer: false }) * 1000,
    modules: values.modules?.split(',').map((s) => s.trim()).filter(Boolean),
    cpuProf: values['cpu-prof'] === undefined ? undefined : path.resolve(values['cpu-prof']),
    json: values.json ?? false,
    keep: values.keep ?? false,
    maxTimeMs: positive('max-time', values['max-time'], 600, { integer: false }) * 1000,
  };
}
