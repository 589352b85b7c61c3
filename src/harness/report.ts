// What a replay says: a progress bar on stderr while it works, then a table on stdout and, with
// --report, the same as JSON. The table is for people; the JSON is for programs and keeps every call.
import { writeFileSync } from 'node:fs';
import type { ToolInfo } from './answers.js';
import type { CaseResult } from './faults.js';
import type { InvariantId, InvariantResult } from './invariants.js';
import type { FaultKind } from './options.js';
import type { Plan } from './plan.js';
import type { Exchange, Surface } from './session.js';

export const REPORT_VERSION = 1;

export interface ToolVerdict {
  tool: string;
  key_field: string | null;
  /** The answer field read as the run id (run_id, job_id, ...), or null when answers had none. */
  run_id_field: string | null;
  idempotent_hint: boolean | null;
  faults: FaultKind[];
  /** Whether retries of this tool held every invariant they were checked against. */
  verdict: 'idempotent' | 'not idempotent' | 'not tested';
  not_tested_because: string | null;
  broken: InvariantId[];
}

export interface Report {
  version: typeof REPORT_VERSION;
  ok: boolean;
  transcript: string;
  target: string;
  server: { name: string; version: string } | null;
  seed: number;
  rerun: string;
  duration_ms: number;
  faults: { requested: FaultKind[]; not_run: Plan['unused'] };
  surface: { poll_run: boolean; get_usage: boolean; run_resources: boolean };
  invariants: InvariantResult[];
  tools: ToolVerdict[];
  cases: { n: number; line: number; tool: string; fault: FaultKind | null; extra: boolean; why_no_fault: string | null; notes: string[] }[];
  calls: {
    id: string;
    line: number | null;
    tool: string;
    fault: FaultKind | null;
    role: Exchange['role'];
    key: string | null;
    status: Exchange['status'];
    acknowledged: boolean;
    refused: boolean | null;
    error_code: string | null;
    run_id: string | null;
    phase: string | null;
    replayed: boolean | null;
    ms: number;
    note: string | null;
  }[];
}

export interface ReportInput {
  transcript: string;
  target: string;
  server: { name: string; version: string } | undefined;
  seed: number;
  rerun: string;
  durationMs: number;
  requested: FaultKind[];
  plan: Plan;
  results: CaseResult[];
  exchanges: readonly Exchange[];
  invariants: InvariantResult[];
  tools: ReadonlyMap<string, ToolInfo>;
  surface: Surface;
}

export function buildReport(input: ReportInput): Report {
  const byId = new Map(input.exchanges.map((e) => [e.id, e]));
  // A tool is judged by the calls made to it, not by the polls that found its runs wanting.
  const brokenBy = new Map<string, Set<InvariantId>>();
  for (const invariant of input.invariants) {
    for (const call of invariant.violations.flatMap((v) => v.calls)) {
      const exchange = byId.get(call);
      if (exchange !== undefined && exchange.role !== 'poll') brokenBy.set(exchange.tool, (brokenBy.get(exchange.tool) ?? new Set()).add(invariant.id));
    }
  }
  const faultsBy = new Map<string, Set<FaultKind>>();
  for (const { case: c } of input.results) {
    if (c.fault !== null) faultsBy.set(c.subject.call.tool, (faultsBy.get(c.subject.call.tool) ?? new Set()).add(c.fault));
  }
  const subjects = new Map(input.results.map(({ case: c }) => [c.subject.call.tool, c.subject]));
  const tools: ToolVerdict[] = [...subjects].map(([tool, subject]) => {
    const info = input.tools.get(tool);
    const faults = [...(faultsBy.get(tool) ?? [])];
    const broken = faults.length === 0 ? [] : [...(brokenBy.get(tool) ?? [])];
    return {
      tool,
      key_field: info?.keyField ?? null,
      run_id_field: input.exchanges.find((e) => e.tool === tool && e.answer?.idField !== undefined)?.answer?.idField ?? null,
      idempotent_hint: info?.idempotentHint ?? null,
      faults,
      verdict: faults.length === 0 ? 'not tested' : broken.length > 0 ? 'not idempotent' : 'idempotent',
      not_tested_because: faults.length === 0 ? (subject.plainBecause ?? 'no fault was planned for it') : null,
      broken,
    };
  });
  return {
    version: REPORT_VERSION,
    ok: input.invariants.every((i) => i.status !== 'broken'),
    transcript: input.transcript,
    target: input.target,
    server: input.server ?? null,
    seed: input.seed,
    rerun: input.rerun,
    duration_ms: Math.round(input.durationMs),
    faults: { requested: input.requested, not_run: input.plan.unused },
    surface: { poll_run: input.surface.poll !== undefined, get_usage: input.surface.usage !== undefined, run_resources: input.surface.runResources },
    invariants: input.invariants,
    tools,
    cases: input.results.map(({ case: c, notes }) => ({
      n: c.n,
      line: c.subject.call.line,
      tool: c.subject.call.tool,
      fault: c.fault,
      extra: c.extra,
      why_no_fault: c.fault === null ? (c.subject.plainBecause ?? 'every fault asked for went to other calls') : null,
      notes,
    })),
    calls: input.exchanges.map((e) => ({
      id: e.id,
      line: e.line,
      tool: e.tool,
      fault: e.fault,
      role: e.role,
      key: e.key ?? null,
      status: e.status,
      acknowledged: e.acknowledged,
      refused: e.answer?.refused ?? null,
      error_code: e.answer?.errorCode ?? null,
      run_id: e.answer?.runId ?? null,
      phase: e.answer?.phase ?? null,
      replayed: e.answer?.replayed ?? null,
      ms: e.ms,
      note: e.note ?? null,
    })),
  };
}

export function writeReport(file: string, report: Report): void {
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
}

function table(rows: string[][], indent = '  '): string {
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => (row[col] ?? '').length)));
  return rows.map((row) => indent + row.map((cell, col) => (col === row.length - 1 ? cell : cell.padEnd(widths[col]!))).join('  ')).join('\n');
}

const MARK = { held: '✓', broken: '✗', 'not-checked': '–' } as const;
const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
const CALLS_SHOWN = 12;
const VIOLATIONS_SHOWN = 5;
const REPORT_HINT = ' (--report FILE writes them all)';

/** The calls behind a violation, grouped by case so each group says which fault and which call. */
function describeCalls(report: Report, ids: string[]): string {
  const byCase = new Map<string, string[]>();
  for (const id of ids) {
    const prefix = id.split('.')[0]!;
    byCase.set(prefix, [...(byCase.get(prefix) ?? []), id]);
  }
  // Cases in order, then the harness's own settle polls and late retries.
  const order = (prefix: string) => (/^\d+$/.test(prefix) ? Number(prefix) : Number.MAX_SAFE_INTEGER);
  const parts = [...byCase].sort(([a], [b]) => order(a) - order(b)).map(([prefix, list]) => {
    const c = report.cases.find((x) => String(x.n) === prefix);
    const shown = list.length > CALLS_SHOWN ? [...list.slice(0, CALLS_SHOWN), `+${list.length - CALLS_SHOWN} more`] : list;
    const what = c === undefined ? prefix : `case ${c.n}, ${c.fault ?? 'replayed'} ${c.tool} (line ${c.line})`;
    return `${what}: ${shown.join(', ')}`;
  });
  return parts.join('; ');
}

export function formatReport(report: Report): string {
  const out: string[] = [];
  const server = report.server === null ? 'the server' : `${report.server.name} ${report.server.version}`;
  out.push(`runledger replay ${report.transcript} → ${server} (${report.target})`);
  out.push(`seed ${report.seed} · ${report.cases.length} cases · ${report.calls.length} calls · ${(report.duration_ms / 1000).toFixed(1)} s`, '');

  const faultRows = [['fault', 'cases', 'calls']];
  for (const fault of report.faults.requested) {
    const cases = report.cases.filter((c) => c.fault === fault).length;
    const calls = report.calls.filter((c) => c.fault === fault).length;
    if (cases > 0) faultRows.push([fault, String(cases), String(calls)]);
  }
  out.push(table(faultRows));
  for (const { fault, reason } of report.faults.not_run) out.push(`  not run: ${fault}: ${reason}`);
  out.push('');

  const invariantRows = [['', 'invariant', '', 'result']];
  for (const i of report.invariants) {
    const result = i.status === 'held' ? `held: ${i.detail}` : i.status === 'broken' ? `BROKEN: ${plural(i.violations.length, 'violation')}` : `not checked: ${i.detail}`;
    invariantRows.push([MARK[i.status], i.id, i.title, result]);
  }
  out.push(table(invariantRows), '');

  const toolRows = [['tool', 'key field', 'run id field', 'idempotentHint', 'faults', 'retries']];
  for (const t of report.tools) {
    const hint = t.idempotent_hint === true ? 'claimed' : t.idempotent_hint === false ? 'false' : '—';
    const verdict =
      t.verdict === 'not idempotent' ? `NOT idempotent (${t.broken.join(', ')})` : t.verdict === 'not tested' ? `not tested: ${t.not_tested_because}` : t.verdict;
    toolRows.push([t.tool, t.key_field ?? '—', t.run_id_field ?? '—', hint, String(t.faults.length), verdict]);
  }
  out.push(table(toolRows));

  // Calls that got no answer at all are no evidence either way; say so rather than pass over them.
  const unanswered = report.calls.filter((c) => c.status === 'failed');
  if (unanswered.length > 0) {
    out.push('', `${plural(unanswered.length, 'call')} got no answer: ${describeCalls(report, unanswered.map((c) => c.id))}`);
    out.push(`  first failure: ${unanswered[0]!.note ?? 'unknown'}`);
  }

  const broken = report.invariants.filter((i) => i.status === 'broken');
  if (broken.length > 0) {
    out.push('', 'Broken:');
    for (const i of broken) {
      for (const v of i.violations.slice(0, VIOLATIONS_SHOWN)) {
        out.push(`  ${i.id}: ${v.message}`);
        if (v.calls.length > 0) out.push(`    calls: ${describeCalls(report, v.calls)}`);
      }
      const more = i.violations.length - VIOLATIONS_SHOWN;
      if (more > 0) out.push(`  ${i.id}: … and ${more} more like these${REPORT_HINT}`);
    }
  }
  out.push('', `re-run: ${report.rerun}`);
  return out.join('\n') + '\n';
}

/** A progress bar on stderr: redrawn in place on a terminal, one line a step in a log. */
export function createProgress(total: number, stream: NodeJS.WriteStream = process.stderr): { step(label: string): void; done(): void } {
  let count = 0;
  const width = 24;
  return {
    step(label) {
      count = Math.min(count + 1, total);
      const filled = Math.round((count / total) * width);
      const line = `replay [${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${count}/${total} ${label}`;
      if (stream.isTTY === true) stream.write(`\r\x1b[K${line.slice(0, (stream.columns ?? 100) - 1)}`);
      else stream.write(line + '\n');
    },
    done() {
      if (stream.isTTY === true) stream.write('\r\x1b[K');
    },
  };
}
