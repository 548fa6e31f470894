// Results: one row per figure, with the same-run baseline, the ratio and the DESIGN §10 target,
// printed as a table or as JSON.

export interface Target {
  /** '<=' when lower is better (memory, latency), '>=' when higher is (rates). */
  op: '<=' | '>=';
  value: number;
}

export interface Row {
  metric: string;
  unit: string;
  parley: number;
  baseline?: number;
  target?: Target;
}

export interface ScenarioResult {
  name: string;
  status: 'ok' | 'skipped' | 'failed';
  /** Why it was skipped or failed, or a caveat on the figures. */
  note?: string;
  rows: Row[];
  /** Everything else measured (counts, CPU shares, raw RSS), for --json and the docs. */
  details: Record<string, unknown>;
}

export function ratio(row: Row): number | undefined {
  return row.baseline !== undefined && row.baseline > 0 ? row.parley / row.baseline : undefined;
}

export function meets(row: Row): boolean | undefined {
  if (!row.target || !Number.isFinite(row.parley)) return undefined;
  return row.target.op === '<=' ? row.parley <= row.target.value : row.parley >= row.target.value;
}

function fmt(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '—';
  const abs = Math.abs(v);
  if (abs >= 1000) return Math.round(v).toLocaleString('en-US');
  if (abs >= 100) return v.toFixed(0);
  if (abs >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export function table(results: ScenarioResult[]): string {
  const header = ['scenario', 'figure', 'parley', 'baseline', 'ratio', 'target', 'met'];
  const lines: string[][] = [];
  const notes: string[] = [];
  for (const r of results) {
    if (r.status !== 'ok') {
      lines.push([r.name, r.status, '', '', '', '', '']);
      notes.push(`${r.name}: ${r.status}: ${r.note ?? ''}`);
      continue;
    }
    if (r.note) notes.push(`${r.name}: ${r.note}`);
    r.rows.forEach((row, i) => {
      const q = ratio(row);
      const m = meets(row);
      lines.push([
        i === 0 ? r.name : '',
        `${row.metric} (${row.unit})`,
        fmt(row.parley),
        fmt(row.baseline),
        q === undefined ? '—' : `${q.toFixed(2)}×`,
        row.target ? `${row.target.op === '<=' ? '≤' : '≥'} ${fmt(row.target.value)}` : '—',
        m === undefined ? '—' : m ? 'yes' : 'no',
      ]);
    });
  }
  const widths = header.map((h, c) => Math.max(h.length, ...lines.map((l) => l[c]!.length)));
  const numeric = new Set([2, 3, 4, 5]);
  const render = (cells: string[]) => cells.map((cell, c) => (numeric.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd();
  const out = [render(header), widths.map((w) => '-'.repeat(w)).join('  '), ...lines.map(render)];
  out.push('', 'ratio = parley ÷ baseline (baseline: a plain Node server doing only the transport part — TLS echo, TLS fan-out or HTTP to a file — same machine, same run)');
  for (const n of notes) out.push(`note: ${n}`);
  return out.join('\n');
}
