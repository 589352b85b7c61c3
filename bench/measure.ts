// Small measuring helpers shared by the benchmarks. Numbers are only ever compared with a baseline
// measured in the same run, never with a fixed time.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { VERSION } from '../src/version.js';

/** The product_shot arguments every benchmark sends: a realistic brief, not a toy. */
export const BENCH_REQUEST = {
  brief: 'A matte ceramic mug on a pale oak table, morning light, soft shadow, room for a headline',
  product_name: 'Morning Mug',
  variants: 2,
  style: 'studio',
};

export interface Rate {
  label: string;
  opsPerSec: number;
}

export interface Comparison {
  operation: string;
  measured: number;
  baselineLabel: string;
  baseline: number;
  /** measured ÷ baseline, oriented so that higher is better. */
  ratio: number;
  target: number;
  unit: string;
  /**
   * Latency rows: measured and baseline are times, so `ratio` is baseline ÷ measured and `target` is
   * 1 ÷ the allowed slowdown; the table shows them the readable way round, measured ÷ baseline ≤ limit.
   */
  lowerIsBetter?: boolean;
  /** One short line printed under the table (e.g. the p90s beside the p50s of the row). */
  note?: string;
}

/** Runs `op` `count` times in sequence and returns operations per second. */
export async function opsPerSecond(count: number, op: (i: number) => unknown): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i++) await op(i);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return count / seconds;
}

/** The q-quantile (0–1) of `values`, nearest rank. */
export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * Operations per second of each side, taking one operation of every side in turn (the order rotating),
 * so that drift in the machine (a checkpoint, a flush, another process waking) falls on every side
 * alike. Blocks of one side at a time let a database's periodic work land on one side only: on
 * PostgreSQL, 300-insert blocks put the same two inserts 0.66–1.07× apart across runs, one by one 0.96–1.00×.
 */
export async function alternatingRates(count: number, sides: ((i: number) => Promise<unknown>)[]): Promise<number[]> {
  const nanos = sides.map(() => 0);
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < sides.length; j++) {
      const s = (i + j) % sides.length;
      const start = process.hrtime.bigint();
      await sides[s]!(i);
      nanos[s]! += Number(process.hrtime.bigint() - start);
    }
  }
  return nanos.map((n) => count / (n / 1e9));
}

/** Runs `op` `count` times in sequence, pushing each one's duration in microseconds onto `into`. */
export async function timeEach(count: number, op: () => unknown, into?: number[]): Promise<void> {
  for (let i = 0; i < count; i++) {
    const start = process.hrtime.bigint();
    await op();
    into?.push(Number(process.hrtime.bigint() - start) / 1000);
  }
}

export async function connect(args: string[]): Promise<Client> {
  const client = new Client({ name: 'runledger-bench', version: VERSION });
  // No tools/list: the client then skips validating structuredContent against the output schema, so
  // every side measures the wire and the server, not the client's schema checks.
  await client.connect(new StdioClientTransport({ command: process.execPath, args, stderr: 'inherit' }));
  return client;
}

export interface Side {
  op: () => Promise<unknown>;
  /** Each measured call's duration in microseconds. */
  samples: number[];
}

export const side = (op: () => Promise<unknown>): Side => ({ op, samples: [] });

/**
 * Warms every side up unrecorded (the JIT, the page cache, the children's first calls), then times
 * them in interleaved rounds, each starting with a different side, so that drift in the machine's
 * load falls on all alike.
 */
export async function interleavedRounds(
  sides: Side[],
  opts: { warmup: number; rounds: number; callsPerRound: number },
): Promise<void> {
  for (const s of sides) await timeEach(opts.warmup, s.op);
  for (let round = 0; round < opts.rounds; round++) {
    for (let i = 0; i < sides.length; i++) {
      const s = sides[(round + i) % sides.length]!;
      await timeEach(opts.callsPerRound, s.op, s.samples);
    }
  }
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function formatTable(title: string, rows: Comparison[]): string {
  const lines = [
    title,
    '',
    '| operation | measured | baseline (same run) | ratio | target | |',
    '|---|---:|---|---:|---:|---|',
    ...rows.map((r) => {
      const shown = r.lowerIsBetter
        ? `${(1 / r.ratio).toFixed(2)}× | ≤ ${(1 / r.target).toFixed(2)}×`
        : `${r.ratio.toFixed(2)}× | ≥ ${Number(r.target.toFixed(2))}×`;
      return (
        `| ${r.operation} | ${fmt(r.measured)} ${r.unit} | ${r.baselineLabel}: ${fmt(r.baseline)} ${r.unit} | ` +
        `${shown} | ${r.ratio >= r.target ? 'met' : 'MISSED'} |`
      );
    }),
  ];
  const notes = rows.flatMap((r) => (r.note === undefined ? [] : [r.note]));
  if (notes.length > 0) lines.push('', ...notes);
  return lines.join('\n');
}

function fmt(n: number): string {
  return n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1);
}
