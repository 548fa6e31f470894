// Summarises a V8 CPU profile (from `npm run bench -- --cpu-prof DIR`): the functions with the
// most self time, and the same time grouped by source file, so a bottleneck can be named with
// figures rather than guessed.
//   usage: node --import tsx bench/cpu-top.ts <file.cpuprofile> [how many, default 25]
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: cpu-top <file.cpuprofile> [how many]\n');
  process.exit(2);
}
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));

// Shorter names: paths inside the repository from its root, dependencies from node_modules on.
const cwd = process.cwd();
function where(url: string): string {
  if (!url) return '(native)';
  let p = url.startsWith('file://') ? decodeURIComponent(new URL(url).pathname) : url;
  const nm = p.lastIndexOf('node_modules/');
  if (nm >= 0) return p.slice(nm);
  if (p.startsWith(cwd)) p = path.relative(cwd, p);
  return p;
}

const selfByFunction = new Map<string, number>();
const selfByFile = new Map<string, number>();
let total = 0;
profile.samples.forEach((id, i) => {
  // V8 gives each sample the time since the previous one; it belongs to the node sampled.
  const dt = profile.timeDeltas[i] ?? 0;
  const node = byId.get(id);
  if (!node) return;
  total += dt;
  const f = node.callFrame;
  const name = `${f.functionName || '(anonymous)'}  ${where(f.url)}${f.url ? `:${f.lineNumber + 1}` : ''}`;
  selfByFunction.set(name, (selfByFunction.get(name) ?? 0) + dt);
  const group = f.url ? where(f.url) : f.functionName;
  selfByFile.set(group, (selfByFile.get(group) ?? 0) + dt);
});

// The profile spans the process's whole life, waits included; shares of the busy time (all but
// '(idle)') say where the CPU actually went.
const busy = total - (selfByFile.get('(idle)') ?? 0);
const lines = [`${path.basename(file)}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy`];
const show = (title: string, m: Map<string, number>) => {
  lines.push('', `${title} (share of busy time, self ms)`);
  for (const [name, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    if (name.startsWith('(idle)')) continue;
    lines.push(`${((us / busy) * 100).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${name}`);
  }
};
show('self time by function', selfByFunction);
show('self time by file', selfByFile);
// A reader that stops early (`| head`) closes the pipe; that is not an error worth a stack trace.
process.stdout.on('error', () => process.exit(0));
process.stdout.write(lines.join('\n') + '\n');
