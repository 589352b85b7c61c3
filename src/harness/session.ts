// One replay's conversation with the server: every tools/call the harness sends is kept as an
// exchange (what was asked, under which fault, what came back), which is what the invariants judge.
// Every call asks for progress with a token of its own, and the wire is watched for progress that
// arrives after its call was answered.
import { performance } from 'node:perf_hooks';
import {
  CallToolResultSchema,
  ErrorCode,
  McpError,
  type CallToolResult,
  type JSONRPCMessage,
} from '@modelcontextprotocol/sdk/types.js';
import {
  isTerminalPhase,
  keyFieldOf,
  readAnswer,
  readUsage,
  rpcErrorAnswer,
  STEERING_FIELDS,
  type Answer,
  type ToolInfo,
  type ToolResult,
  type Usage,
} from './answers.js';
import { sendBroken } from './broken-stream.js';
import type { Conventions } from './conventions.js';
import type { Exchange, LateProgress, RunResource } from './exchange.js';
import { readField } from './fields.js';
import { canonicalJson, isObject, type JsonObject } from './json.js';
import type { Target } from './target.js';

/** A call that waits for nothing but its answer: longer than any fault waits, shorter than forever. */
const CALL_TIMEOUT_MS = 120_000;
const TOKEN_PREFIX = 'runledger-replay:';

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
  /** The client's own timeout, this long after sending: the SDK gives up and sends notifications/cancelled. */
  timeoutMs?: number;
  /** Send notifications/cancelled on the call's first progress notification, and, when set, this long after sending at the latest. */
  cancel?: { afterMs: number | undefined };
  /** Break the call's HTTP response stream on its first event, or this long after sending; nothing is cancelled. */
  breakAfterMs?: number;
  /** Take the answer but treat it as lost on its way back: not acknowledged. */
  lose?: boolean;
}

const median = (values: number[]): number | undefined => {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
};
const idKey = (generation: number, id: unknown) => `${generation}:${typeof id}:${String(id)}`;

export class Session {
  readonly exchanges: Exchange[] = [];
  readonly lateProgress: LateProgress[] = [];
  /** Progress notifications for the harness's calls, in all. */
  progressSeen = 0;
  /** The request a group was first answered for: a later call with other arguments is a conflict. */
  private readonly bound = new Map<string, FirstRequest>();
  private readonly byToken = new Map<string, Exchange & { answeredAt?: number }>();
  private readonly tokenOf = new Map<string, string>();
  private readonly onProgress = new Map<string, () => void>();
  /** When each run was first named by an answer, and when the harness saw it end. */
  private readonly runSeen = new Map<string, { tool: string; at: number; ended: boolean }>();
  private readonly runEnded = new Map<string, number>();
  /** Why the usage tool could not be read, once it could not. */
  usageProblem: string | undefined;
  /** The fields the usage counts were read from, once read. */
  usageFields: Usage['fields'] | undefined;

  constructor(
    readonly target: Target,
    readonly tools: ReadonlyMap<string, ToolInfo>,
    readonly conventions: Conventions,
  ) {
    target.listen({ sent: (message) => this.sent(message), received: (message) => this.received(message) });
  }

  private sent(message: JSONRPCMessage): void {
    if (!('method' in message) || message.method !== 'tools/call' || !('id' in message)) return;
    const token =
      isObject(message.params) && isObject(message.params._meta) ? message.params._meta.progressToken : undefined;
    if (typeof token === 'string' && token.startsWith(TOKEN_PREFIX))
      this.tokenOf.set(idKey(this.target.generation, message.id), token);
  }

  private received(message: JSONRPCMessage): void {
    if ('method' in message) {
      if (message.method !== 'notifications/progress' || !isObject(message.params)) return;
      this.progressSeen++;
      const token = String(message.params.progressToken);
      const exchange = this.byToken.get(token);
      if (exchange === undefined) return;
      exchange.progress++;
      if (exchange.answeredAt !== undefined) {
        this.lateProgress.push({
          call: exchange.id,
          tool: exchange.tool,
          afterMs: Math.round((performance.now() - exchange.answeredAt) * 10) / 10,
        });
      }
      this.onProgress.get(token)?.();
      return;
    }
    if (!('id' in message)) return;
    const token = this.tokenOf.get(idKey(this.target.generation, message.id));
    const exchange = token === undefined ? undefined : this.byToken.get(token);
    if (exchange !== undefined) exchange.answeredAt ??= performance.now();
  }

  /** Which group a call belongs to, and the request it makes (its arguments, less key and steering). */
  private groupOf(
    tool: string,
    args: JsonObject,
  ): { group: string | undefined; key: string | undefined; request: string } {
    const info = this.tools.get(tool);
    const keyField = keyFieldOf(info, args, this.conventions.keyArgument);
    const request = canonicalJson(
      Object.fromEntries(Object.entries(args).filter(([f]) => f !== keyField && !STEERING_FIELDS.has(f))),
    );
    // A dry run asks for no effect, and a read-only tool has none: neither joins a group.
    if (args.dry_run === true || info === undefined || info.readOnlyHint === true)
      return { group: undefined, key: undefined, request };
    if (keyField !== null) {
      const key = args[keyField] as string;
      return { group: `${tool} ${key}`, key, request };
    }
    return { group: info.idempotentHint === true ? `${tool} ${request}` : undefined, key: undefined, request };
  }

  readAnswer(result: ToolResult): Answer {
    return readAnswer(result, this.conventions);
  }

  async send(call: OutgoingCall, options: SendOptions = {}): Promise<Exchange> {
    const { id, line, fault, tool, args, role } = call;
    const { group, key, request } = this.groupOf(tool, args);
    const boundTo = group === undefined ? undefined : this.bound.get(group);
    const conflict = boundTo !== undefined && boundTo.request !== request;
    const exchange: Exchange & { answeredAt?: number } = {
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
      progress: 0,
    };
    this.exchanges.push(exchange);
    if (conflict) exchange.runsBefore = (await this.usage())?.runs;

    const token = `${TOKEN_PREFIX}${id}`;
    this.byToken.set(token, exchange);
    const started = performance.now();
    try {
      // The broken stream's request is its own, under an id of the harness's, outside the client's.
      if (options.breakAfterMs !== undefined)
        await sendBroken(this, exchange, token, `${TOKEN_PREFIX}broken:${id}`, args, options.breakAfterMs);
      else await this.sendOverClient(exchange, token, args, options);
    } finally {
      exchange.ms = Math.round((performance.now() - started) * 10) / 10;
      this.onProgress.delete(token);
    }
    const runId = exchange.answer?.runId;
    if (runId !== undefined && !this.runSeen.has(runId)) {
      this.runSeen.set(runId, {
        tool,
        at: performance.now(),
        ended: isTerminalPhase(exchange.answer?.phase, this.conventions),
      });
    }
    if (
      group !== undefined &&
      !conflict &&
      exchange.answer !== undefined &&
      !exchange.answer.refused &&
      !this.bound.has(group)
    ) {
      this.bound.set(group, { request, tool, args, line });
    }
    if (conflict) exchange.runsAfter = (await this.usage())?.runs;
    return exchange;
  }

  private async sendOverClient(
    exchange: Exchange,
    token: string,
    args: JsonObject,
    options: SendOptions,
  ): Promise<void> {
    const controller = new AbortController();
    let cancelled: string | undefined;
    let timer: NodeJS.Timeout | undefined;
    if (options.cancel !== undefined) {
      const cancel = (why: string) => {
        if (controller.signal.aborted) return;
        cancelled = why;
        controller.abort(new Error(`cancelled ${why}`));
      };
      const afterMs = options.cancel.afterMs;
      if (afterMs !== undefined)
        timer = setTimeout(() => cancel(`${Math.round(afterMs)} ms after it was sent`), afterMs);
      this.onProgress.set(token, () => cancel('on its first progress notification'));
    }
    const generation = this.target.generation;
    try {
      const result = (await this.target.client.request(
        { method: 'tools/call', params: { name: exchange.tool, arguments: args, _meta: { progressToken: token } } },
        CallToolResultSchema,
        { signal: controller.signal, timeout: options.timeoutMs ?? CALL_TIMEOUT_MS },
      )) as CallToolResult;
      exchange.answer = this.readAnswer(result);
      exchange.acknowledged = options.lose !== true;
      if (options.lose === true) exchange.note = 'answer dropped on its way back (lost-answer)';
      else if (options.timeoutMs !== undefined)
        exchange.note = `answered before its ${Math.round(options.timeoutMs)} ms timeout`;
      else if (options.cancel !== undefined) exchange.note = 'answered before it could be cancelled';
    } catch (err) {
      if (cancelled !== undefined) {
        exchange.status = 'aborted';
        exchange.note = `cancelled (notifications/cancelled) ${cancelled}`;
      } else if (options.timeoutMs !== undefined && err instanceof McpError && err.code === ErrorCode.RequestTimeout) {
        exchange.status = 'aborted';
        exchange.note = `timed out after ${Math.round(options.timeoutMs)} ms; the client sent notifications/cancelled`;
      } else if (
        generation !== this.target.generation ||
        (err instanceof McpError && err.code === ErrorCode.ConnectionClosed)
      ) {
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
    }
  }

  /** Each group's first answered request, in the order they were answered. */
  firstRequests(): ReadonlyMap<string, FirstRequest> {
    return this.bound;
  }

  /** How long this tool takes to answer a request in this replay (the median), when it has answered one. */
  answerTime(tool: string): number | undefined {
    // A refusal, and a replay of a stored answer, take a shorter road than the work itself.
    const answered = this.exchanges.filter(
      (e) =>
        e.tool === tool &&
        e.answer !== undefined &&
        !e.answer.refused &&
        e.role !== 'poll' &&
        e.role !== 'late' &&
        e.role !== 'conflict',
    );
    const fresh = answered.filter((e) => e.answer!.replayed !== true);
    return median((fresh.length > 0 ? fresh : answered).map((e) => e.ms));
  }

  /**
   * How long this tool's runs take in this replay, from their first answer until seen ended: the
   * shortest, since the others waited in the server's queue behind the rest of the replay.
   */
  runTime(tool: string): number | undefined {
    const times: number[] = [];
    for (const [runId, seen] of this.runSeen) {
      const ended = this.runEnded.get(runId);
      if (seen.tool === tool && !seen.ended && ended !== undefined) times.push(ended - seen.at);
    }
    return times.length === 0 ? undefined : Math.min(...times);
  }

  /** The harness saw this run ended. */
  ended(runId: string): void {
    if (!this.runEnded.has(runId)) this.runEnded.set(runId, performance.now());
  }

  /** The server's own count of runs and charges, when it offers a usage tool that can be read. */
  async usage(): Promise<Usage | undefined> {
    const usage = this.conventions.usage;
    if (usage === undefined) return undefined;
    const result = await this.call(usage.tool, {});
    if (result === undefined) {
      this.usageProblem ??= `${usage.tool} gave no answer`;
      return undefined;
    }
    const read = readUsage(result, usage);
    if ('problem' in read) {
      this.usageProblem ??= read.problem;
      return undefined;
    }
    this.usageFields ??= read.fields;
    return read;
  }

  /** The arguments of a poll for one run, waiting up to `waitSeconds` when the tool can wait. */
  pollArguments(runId: string, waitSeconds = 0): JsonObject {
    const poll = this.conventions.poll!;
    const numeric =
      (poll.argumentType === 'integer' || poll.argumentType === 'number') && /^-?\d+(\.\d+)?$/.test(runId);
    const args: JsonObject = { [poll.argument]: numeric ? Number(runId) : runId };
    if (waitSeconds > 0 && poll.waitArgument !== undefined)
      args[poll.waitArgument] = Math.min(waitSeconds, poll.waitMax ?? waitSeconds);
    return args;
  }

  /** Asks after a run, blocking up to `waitSeconds` when the poll tool can wait. */
  async poll(runId: string, waitSeconds = 0): Promise<Answer | undefined> {
    const poll = this.conventions.poll;
    if (poll === undefined) return undefined;
    const result = await this.call(poll.tool, this.pollArguments(runId, waitSeconds));
    return result === undefined ? undefined : this.readAnswer(result);
  }

  /** The run as its resource shows it, or undefined when the server has none for it. */
  async runResource(runId: string): Promise<RunResource | undefined> {
    const resource = this.conventions.runResource;
    if (resource === undefined) return undefined;
    try {
      const read = await this.target.client.readResource({ uri: resource.template.replace(/\{[^{}]+\}/, runId) });
      const content = read.contents[0];
      const data: unknown = content !== undefined && 'text' in content ? JSON.parse(content.text) : undefined;
      if (!isObject(data)) return undefined;
      const source = { data, meta: {} };
      const phase = this.conventions.status
        .map((path) => readField(source, path))
        .find((v) => typeof v === 'string') as string | undefined;
      const billed = resource.billed === undefined ? undefined : readField(source, resource.billed);
      return { phase, billed: typeof billed === 'boolean' ? billed : undefined };
    } catch {
      return undefined;
    }
  }

  /** A call the harness makes for itself: not an exchange, and a failure is just "no answer". */
  private async call(tool: string, args: JsonObject): Promise<CallToolResult | undefined> {
    try {
      return (await this.target.client.request(
        { method: 'tools/call', params: { name: tool, arguments: args } },
        CallToolResultSchema,
        {
          timeout: CALL_TIMEOUT_MS,
        },
      )) as CallToolResult;
    } catch {
      return undefined;
    }
  }
}
