// What a replay says: a progress bar on stderr while it works, then a table on stdout and, with
// --report, the same as JSON. The table is for people; the JSON is for programs and keeps every call.
// Its zod schema below is the contract, published as JSON Schema by `runledger replay --report-schema`.
import { writeFileSync } from 'node:fs';
import { z } from 'zod';
import type { ToolInfo } from './answers.js';
import { CONVENTIONS, type Conventions } from './conventions.js';
import type { Exchange } from './exchange.js';
import type { CaseResult } from './faults.js';
import { FAULT_KINDS, type FaultKind } from './options.js';
import type { Plan } from './plan.js';
import { INVARIANTS, type InvariantId, type InvariantResult } from './verdicts.js';

/** The report's format version, in the same field as the transcript's: `v`. */
export const REPORT_VERSION = 2;

const fault = z.enum(FAULT_KINDS);
const invariantId = z.enum(Object.keys(INVARIANTS) as [InvariantId, ...InvariantId[]]);
const nullable = <T extends z.ZodType>(schema: T) => schema.nullable();

const MissingSchema = z.object({
  convention: z.string().describe('What the check lacked'),
  flag: nullable(z.string()).describe('The replay flag that supplies it, when a flag can'),
  profile_field: nullable(z.string()).describe('The profile field that supplies it, when a profile can'),
});

const InvariantSchema = z.object({
  id: invariantId,
  title: z.string(),
  status: z.enum(['held', 'broken', 'not-checked']),
  detail: z.string().describe('What was checked ("6 keys") or, when not checked, why not'),
  violations: z.array(
    z.object({ message: z.string(), calls: z.array(z.string()).describe('The ids of the calls that broke it') }),
  ),
  missing: z.array(MissingSchema).describe('When not checked: what would let it be checked'),
});

const ConventionSchema = z.object({
  value: nullable(z.string()).describe('The convention as used, or null when none was found'),
  from: z.enum(['profile', 'flag', 'detected', 'default', 'missing']),
  note: nullable(z.string()),
});

export const ReportSchema = z
  .object({
    v: z.literal(REPORT_VERSION).describe('The report format version'),
    ok: z.boolean().describe('No invariant broke'),
    verdict: z
      .enum(['held', 'broken', 'incomplete'])
      .describe('incomplete: nothing broke, but with --require-all some invariant could not be checked'),
    require_all: z.boolean(),
    transcript: z.string(),
    target: z.string().describe('How the server was reached'),
    server: nullable(z.object({ name: z.string(), version: z.string() })),
    seed: z.number().int(),
    rerun: z.string().describe('The command that replays the same calls with the same faults'),
    duration_ms: z.number().int(),
    profile: z.object({
      name: z.string().describe('auto, auto: <built-in profile>, a built-in profile, or the profile file'),
      conventions: z.object(
        Object.fromEntries(CONVENTIONS.map((name) => [name, ConventionSchema])) as Record<
          (typeof CONVENTIONS)[number],
          typeof ConventionSchema
        >,
      ),
    }),
    faults: z.object({ requested: z.array(fault), not_run: z.array(z.object({ fault, reason: z.string() })) }),
    invariants: z.array(InvariantSchema),
    tools: z.array(
      z.object({
        tool: z.string(),
        key_field: nullable(z.string()),
        run_id_field: nullable(z.string()).describe(
          'The answer field read as the run id, or null when answers had none',
        ),
        idempotent_hint: nullable(z.boolean()),
        faults: z.array(fault),
        verdict: z
          .enum(['idempotent', 'not idempotent', 'not tested'])
          .describe('Whether retries of this tool held every invariant they were checked against'),
        not_tested_because: nullable(z.string()),
        broken: z.array(invariantId),
      }),
    ),
    cases: z.array(
      z.object({
        n: z.number().int(),
        line: z.number().int().describe('The transcript line of the recorded call'),
        tool: z.string(),
        fault: nullable(fault),
        extra: z.boolean().describe('Run after the transcript, under a key of its own'),
        batch: nullable(z.number().int()).describe('SIGKILL cases: the restart this case shared'),
        why_no_fault: nullable(z.string()),
        notes: z.array(z.string()),
      }),
    ),
    calls: z.array(
      z.object({
        id: z.string().describe('"3.2": case 3, its second request; "settle.N" and "late.N" come after the cases'),
        line: nullable(z.number().int()),
        tool: z.string(),
        fault: nullable(fault),
        role: z.enum(['first', 'copy', 'retry', 'conflict', 'late', 'poll', 'call']),
        key: nullable(z.string()),
        status: z.enum(['answered', 'aborted', 'interrupted', 'failed']),
        acknowledged: z.boolean().describe('The client took the answer in'),
        refused: nullable(z.boolean()),
        error_code: nullable(z.string()),
        run_id: nullable(z.string()),
        phase: nullable(z.string()),
        replayed: nullable(z.boolean()),
        progress: z.number().int().describe('Progress notifications that came for it'),
        ms: z.number(),
        note: nullable(z.string()),
      }),
    ),
  })
  .describe('What runledger replay found: every invariant, every case, every call');

export type Report = z.infer<typeof ReportSchema>;
export type ToolVerdict = Report['tools'][number];

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
  conventions: Conventions;
  usageFields: { runs: string | undefined; charges: string } | undefined;
  requireAll: boolean;
}

function conventionsOf(c: Conventions, usageFields: ReportInput['usageFields']): Report['profile']['conventions'] {
  const value = (name: (typeof CONVENTIONS)[number]): string | null => {
    switch (name) {
      case 'key_argument':
        return c.keyArgument ?? 'any argument named like a key';
      case 'run_id':
        return c.runId.map((p) => p.text).join(', ') + (c.runIdNamed ? '' : ', or any other *_id');
      case 'status':
        return `${c.status.map((p) => p.text).join(', ')}; done: ${[...c.done].join(', ')}; failed: ${[...c.failed].join(', ')}`;
      case 'poll':
        return c.poll === undefined
          ? null
          : `${c.poll.tool}(${c.poll.argument}${c.poll.waitArgument === undefined ? '' : `, ${c.poll.waitArgument} ≤ ${c.poll.waitMax ?? '?'}`})`;
      case 'usage': {
        if (c.usage === undefined) return null;
        const runs = c.usage.runs?.text ?? usageFields?.runs;
        const charges = c.usage.charges?.text ?? usageFields?.charges;
        return `${c.usage.tool} (runs: ${runs ?? '?'}, charges: ${charges ?? '?'})`;
      }
      case 'run_resource':
        return c.runResource?.template ?? null;
    }
  };
  return Object.fromEntries(
    CONVENTIONS.map((name) => [
      name,
      { value: value(name), from: c.found[name].from, note: c.found[name].note ?? null },
    ]),
  ) as Report['profile']['conventions'];
}

export function buildReport(input: ReportInput): Report {
  const byId = new Map(input.exchanges.map((e) => [e.id, e]));
  // A tool is judged by the calls made to it, not by the polls that found its runs wanting.
  const brokenBy = new Map<string, Set<InvariantId>>();
  for (const invariant of input.invariants) {
    for (const call of invariant.violations.flatMap((v) => v.calls)) {
      const exchange = byId.get(call);
      if (exchange !== undefined && exchange.role !== 'poll')
        brokenBy.set(exchange.tool, (brokenBy.get(exchange.tool) ?? new Set()).add(invariant.id));
    }
  }
  const faultsBy = new Map<string, Set<FaultKind>>();
  for (const { case: c } of input.results) {
    if (c.fault !== null)
      faultsBy.set(c.subject.call.tool, (faultsBy.get(c.subject.call.tool) ?? new Set()).add(c.fault));
  }
  const subjects = new Map(input.results.map(({ case: c }) => [c.subject.call.tool, c.subject]));
  const tools: ToolVerdict[] = [...subjects].map(([tool, subject]) => {
    const info = input.tools.get(tool);
    const faults = [...(faultsBy.get(tool) ?? [])];
    const broken = faults.length === 0 ? [] : [...(brokenBy.get(tool) ?? [])];
    return {
      tool,
      key_field: info?.keyField ?? null,
      run_id_field:
        input.exchanges.find((e) => e.tool === tool && e.answer?.idField !== undefined)?.answer?.idField ?? null,
      idempotent_hint: info?.idempotentHint ?? null,
      faults,
      verdict: faults.length === 0 ? 'not tested' : broken.length > 0 ? 'not idempotent' : 'idempotent',
      not_tested_because: faults.length === 0 ? (subject.plainBecause ?? 'no fault was planned for it') : null,
      broken,
    };
  });
  const ok = input.invariants.every((i) => i.status !== 'broken');
  const complete = input.invariants.every((i) => i.status !== 'not-checked');
  return {
    v: REPORT_VERSION,
    ok,
    verdict: !ok ? 'broken' : input.requireAll && !complete ? 'incomplete' : 'held',
    require_all: input.requireAll,
    transcript: input.transcript,
    target: input.target,
    server: input.server ?? null,
    seed: input.seed,
    rerun: input.rerun,
    duration_ms: Math.round(input.durationMs),
    profile: { name: input.conventions.profile, conventions: conventionsOf(input.conventions, input.usageFields) },
    faults: { requested: input.requested, not_run: input.plan.unused },
    invariants: input.invariants,
    tools,
    cases: input.results.map(({ case: c, notes }) => ({
      n: c.n,
      line: c.subject.call.line,
      tool: c.subject.call.tool,
      fault: c.fault,
      extra: c.extra,
      batch: c.batch,
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
      progress: e.progress,
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
  return rows
    .map(
      (row) => indent + row.map((cell, col) => (col === row.length - 1 ? cell : cell.padEnd(widths[col]!))).join('  '),
    )
    .join('\n');
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
  const parts = [...byCase]
    .sort(([a], [b]) => order(a) - order(b))
    .map(([prefix, list]) => {
      const c = report.cases.find((x) => String(x.n) === prefix);
      const shown =
        list.length > CALLS_SHOWN ? [...list.slice(0, CALLS_SHOWN), `+${list.length - CALLS_SHOWN} more`] : list;
      const what = c === undefined ? prefix : `case ${c.n}, ${c.fault ?? 'replayed'} ${c.tool} (line ${c.line})`;
      return `${what}: ${shown.join(', ')}`;
    });
  return parts.join('; ');
}

export function formatReport(report: Report): string {
  const out: string[] = [];
  const server = report.server === null ? 'the server' : `${report.server.name} ${report.server.version}`;
  out.push(`runledger replay ${report.transcript} → ${server} (${report.target})`);
  out.push(
    `seed ${report.seed} · ${report.cases.length} cases · ${report.calls.length} calls · ${(report.duration_ms / 1000).toFixed(1)} s`,
  );
  const conventions = Object.entries(report.profile.conventions)
    .filter(([name]) => name === 'poll' || name === 'usage' || name === 'key_argument')
    .map(
      ([name, c]) =>
        `${name} ${c.value ?? 'none'}${c.from === 'missing' || c.from === 'default' ? '' : ` (${c.from})`}`,
    );
  out.push(`profile ${report.profile.name} · ${conventions.join(' · ')}`, '');

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
    const result =
      i.status === 'held'
        ? `held: ${i.detail}`
        : i.status === 'broken'
          ? `BROKEN: ${plural(i.violations.length, 'violation')}`
          : `not checked: ${i.detail}`;
    invariantRows.push([MARK[i.status], i.id, i.title, result]);
  }
  out.push(table(invariantRows));
  const missing = report.invariants.flatMap((i) =>
    i.status === 'not-checked' ? i.missing.filter((m) => m.flag !== null) : [],
  );
  const seen = new Set<string>();
  for (const m of missing) {
    if (seen.has(m.convention)) continue;
    seen.add(m.convention);
    out.push(`  missing: ${m.convention}: give ${m.flag}, or "${m.profile_field}" in a --profile file`);
  }
  out.push('');

  const toolRows = [['tool', 'key field', 'run id field', 'idempotentHint', 'faults', 'retries']];
  for (const t of report.tools) {
    const hint = t.idempotent_hint === true ? 'claimed' : t.idempotent_hint === false ? 'false' : '—';
    const verdict =
      t.verdict === 'not idempotent'
        ? `NOT idempotent (${t.broken.join(', ')})`
        : t.verdict === 'not tested'
          ? `not tested: ${t.not_tested_because}`
          : t.verdict;
    toolRows.push([t.tool, t.key_field ?? '—', t.run_id_field ?? '—', hint, String(t.faults.length), verdict]);
  }
  out.push(table(toolRows));

  // Calls that got no answer at all are no evidence either way; say so rather than pass over them.
  const unanswered = report.calls.filter((c) => c.status === 'failed');
  if (unanswered.length > 0) {
    out.push(
      '',
      `${plural(unanswered.length, 'call')} got no answer: ${describeCalls(
        report,
        unanswered.map((c) => c.id),
      )}`,
    );
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
  if (report.verdict === 'incomplete') {
    const ids = report.invariants.filter((i) => i.status === 'not-checked').map((i) => i.id);
    out.push('', `--require-all: not checked: ${ids.join(', ')}`);
  }
  out.push('', `re-run: ${report.rerun}`);
  return out.join('\n') + '\n';
}

/** A progress bar on stderr: redrawn in place on a terminal, one line a step in a log. */
export function createProgress(
  total: number,
  stream: NodeJS.WriteStream = process.stderr,
): { step(label: string): void; done(): void } {
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
