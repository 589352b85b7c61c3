// One replay's conversation with the server: every tools/call the harness sends is kept as an
// exchange (what was asked, under which fault, what came back), which is what the invariants judge.
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { CallToolResultSchema, ErrorCode, McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { canonicalJson } from '../ledger/fingerprint.js';
import { readAnswer, rpcErrorAnswer, STEERING_FIELDS, type Answer, type ToolInfo } from './answers.js';
import type { FaultKind } from './options.js';
import { keyFieldOf } from './plan.js';
import type { Target } from './target.js';
import { isObject, type JsonObject } from './transcript.js';

/**
 * first: the first request of a case; copy: a duplicate or a burst member; retry: sent after the
 * fault; conflict: the same key with other arguments; late: the last retry, after runs settled;
 * poll: the harness following a run; call: a recorded call replayed as it was.
 */
export type Role = 'first' | 'copy' | 'retry' | 'conflict' | 'late' | 'poll' | 'call';

export interface Exchange {
  /** "3.2": case 3, its second request; "settle.1" and "late.1" come after the cases. */
  id: string;
  /** The transcript line of the recorded call this replays, or null for the harness's own polls. */
  line: number | null;
  fault: FaultKind | null;
  tool: string;
  role: Role;
  /** Calls with one group must answer alike: (tool, key), or (tool, arguments) for a tool without a key. */
  group: string | undefined;
  key: string | undefined;
  /**
   * answered: an answer came back; aborted: the harness gave up waiting (timeout fault);
   * interrupted: the connection died under it (a SIGKILL); failed: anything else, in `note`.
   */
  status: 'answered' | 'aborted' | 'interrupted' | 'failed';
  /** The client took the answer in: false when it was aborted, interrupted or dropped as "lost". */
  acknowledged: boolean;
  answer: Answer | undefined;
  ms: number;
  note: string | undefined;
  /** Around a conflict, the server's count of runs (get_usage), when it offers one. */
  runsBefore?: number;
  runsAfter?: number;
}

export interface Surface {
  /** A tool that follows a run by run_id (runledger's poll_run), when the server offers one. */
  poll: ToolInfo | undefined;
  /** A tool that counts runs and charges (runledger's get_usage), when the server offers one. */
  usage: ToolInfo | undefined;
  /** The server serves each run as the resource runs://{run_id}. */
  runResources: boolean;
}

export interface Usage {
  runs: number;
  charges: number;
  byTool: Record<string, { runs: number; charges: number }>;
}

export interface RunResource {
  phase: string | undefined;
  billed: boolean | undefined;
}

const CALL_TIMEOUT_MS = 120_000;
const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isInteger(value);

export interface FirstRequest {
  /** The arguments less key and steering fields, as canonical JSON. */
  request: string;
  tool: string;
  args: JsonObject;
  line: number | null;
}

/** What to send, and what it stands for in the replay. */
export type OutgoingCall = Pick<Exchange, 'id' | 'line' | 'fault' | 'tool' | 'role'> & { args: JsonObject };

export interface SendOptions {
  /** Abort the request this long after sending it (a client-side timeout). */
  abortAfterMs?: number;
  /** Take the answer but treat it as lost on its way back: not acknowledged. */
  lose?: boolean;
}

export class Session {
  readonly exchanges: Exchange[] = [];
  /** The request a group was first answered for: a later call with other arguments is a conflict. */
  private readonly bound = new Map<string, FirstRequest>();

  constructor(
    readonly target: Target,
    readonly tools: ReadonlyMap<string, ToolInfo>,
    readonly surface: Surface,
  ) {}

  /** Which group a call belongs to, and the request it makes (its arguments, less key and steering). */
  private groupOf(tool: string, args: JsonObject): { group: string | undefined; key: string | undefined; request: string } {
    const info = this.tools.get(tool);
    const keyField = keyFieldOf(info, args);
    const request = canonicalJson(Object.fromEntries(Object.entries(args).filter(([f]) => f !== keyField && !STEERING_FIELDS.has(f))));
    // A dry run asks for no effect, and a read-only tool has none: neither joins a group.
    if (args.dry_run === true || info === undefined || info.readOnlyHint === true) return { group: undefined, key: undefined, request };
    if (keyField !== null) {
      const key = args[keyField] as string;
      return { group: `${tool} ${key}`, key, request };
    }
    return { group: info.idempotentHint === true ? `${tool} ${request}` : undefined, key: undefined, request };
  }

  async send(call: OutgoingCall, options: SendOptions = {}): Promise<Exchange> {
    const { id, line, fault, tool, args, role } = call;
    const { group, key, request } = this.groupOf(tool, args);
    const boundTo = group === undefined ? undefined : this.bound.get(group);
    const conflict = boundTo !== undefined && boundTo.request !== request;
    const exchange: Exchange = {
      id,
      line,
      fault,
      tool,
      role: conflict ? 'conflict' : role,
      group,
      key,
      status: 'answered',
      acknowledged: false,
      answer: undefined,
      ms: 0,
      note: undefined,
    };
    this.exchanges.push(exchange);
    if (conflict) exchange.runsBefore = (await this.usage())?.runs;

    const controller = options.abortAfterMs === undefined ? undefined : new AbortController();
    const timer = controller && setTimeout(() => controller.abort(new Error('client-side timeout')), options.abortAfterMs);
    const started = performance.now();
    try {
      const result = (await this.target.client.request({ method: 'tools/call', params: { name: tool, arguments: args } }, CallToolResultSchema, {
        signal: controller?.signal,
        timeout: CALL_TIMEOUT_MS,
      })) as CallToolResult;
      exchange.answer = readAnswer(result);
      exchange.acknowledged = options.lose !== true;
      if (options.lose === true) exchange.note = 'answer dropped on its way back (lost-answer)';
      else if (controller !== undefined) exchange.note = `answered before the ${options.abortAfterMs} ms timeout fired`;
    } catch (err) {
      if (controller?.signal.aborted === true) {
        exchange.status = 'aborted';
        exchange.note = `aborted after ${options.abortAfterMs} ms`;
      } else if (err instanceof McpError && err.code === ErrorCode.ConnectionClosed) {
        exchange.status = 'interrupted';
      } else if (err instanceof McpError && err.code !== ErrorCode.RequestTimeout) {
        exchange.answer = rpcErrorAnswer(err.code);
        exchange.acknowledged = true;
        exchange.note = err.message;
      } else {
        exchange.status = 'failed';
        exchange.note = (err as Error).message;
      }
    } finally {
      clearTimeout(timer);
      exchange.ms = Math.round((performance.now() - started) * 10) / 10;
    }
    if (group !== undefined && !conflict && exchange.answer !== undefined && !exchange.answer.refused && !this.bound.has(group)) {
      this.bound.set(group, { request, tool, args, line });
    }
    if (conflict) exchange.runsAfter = (await this.usage())?.runs;
    return exchange;
  }

  /** Each group's first answered request, in the order they were answered. */
  firstRequests(): ReadonlyMap<string, FirstRequest> {
    return this.bound;
  }

  /** The server's own count of runs and charges, when it offers get_usage. */
  async usage(): Promise<Usage | undefined> {
    if (this.surface.usage === undefined) return undefined;
    const result = await this.call(this.surface.usage.name, {});
    const data = result && isObject(result.structuredContent) ? result.structuredContent : undefined;
    if (data === undefined || !isCount(data.runs) || !isCount(data.charges)) return undefined;
    const byTool: Usage['byTool'] = {};
    for (const [tool, counts] of Object.entries(isObject(data.by_tool) ? data.by_tool : {})) {
      if (isObject(counts) && isCount(counts.runs) && isCount(counts.charges)) byTool[tool] = { runs: counts.runs, charges: counts.charges };
    }
    return { runs: data.runs, charges: data.charges, byTool };
  }

  /** Asks after a run, blocking up to `waitSeconds` when the poll tool can wait. */
  async poll(runId: string, waitSeconds = 0): Promise<Answer | undefined> {
    const poll = this.surface.poll;
    if (poll === undefined) return undefined;
    const args: JsonObject = { run_id: runId };
    if (waitSeconds > 0 && 'wait_seconds' in poll.properties) args.wait_seconds = waitSeconds;
    const result = await this.call(poll.name, args);
    return result === undefined ? undefined : readAnswer(result);
  }

  /** The run as its runs:// resource shows it, or undefined when the server has none for it. */
  async runResource(runId: string): Promise<RunResource | undefined> {
    if (!this.surface.runResources) return undefined;
    try {
      const read = await this.target.client.readResource({ uri: `runs://${runId}` });
      const content = read.contents[0];
      const data: unknown = content !== undefined && 'text' in content ? JSON.parse(content.text) : undefined;
      if (!isObject(data)) return undefined;
      return { phase: typeof data.phase === 'string' ? data.phase : undefined, billed: typeof data.billed === 'boolean' ? data.billed : undefined };
    } catch {
      return undefined;
    }
  }

  /** Waits until a run has started working (left its first phase), or has ended; says which. */
  async untilStarted(runId: string, firstPhase: string | undefined, deadline: number): Promise<Answer | undefined> {
    for (;;) {
      const answer = await this.poll(runId);
      if (answer === undefined || answer.refused || answer.phase !== firstPhase || Date.now() > deadline) return answer;
      await sleep(10);
    }
  }

  /** A call the harness makes for itself: not an exchange, and a failure is just "no answer". */
  private async call(tool: string, args: JsonObject): Promise<CallToolResult | undefined> {
    try {
      return (await this.target.client.request({ method: 'tools/call', params: { name: tool, arguments: args } }, CallToolResultSchema, {
        timeout: CALL_TIMEOUT_MS,
      })) as CallToolResult;
    } catch {
      return undefined;
    }
  }
}
