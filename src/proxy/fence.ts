// The fence in front of one upstream tool call: the ledger decides whether this (tenant, tool, key) is
// a first call, a retry of a stored answer, a retry of a call still in flight, or a key reused with
// other arguments. A first call is recorded as started (a run leased to this process) before it is
// forwarded, and its answer is stored after; between the two, nothing but this process's lease says
// it is in flight. When that lease runs out, or its holder is a process of this host known to have
// exited, the holder died mid-call: the outcome is unknown.
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import {
  CallInProgressError,
  ErrorCode,
  IdempotencyKeyReusedError,
  NotFoundError,
  OutcomeUnknownError,
  RunledgerError,
  UpstreamUnavailableError,
} from '../errors.js';
import {
  fingerprint,
  holderGone,
  isTerminal,
  Phase,
  processOwner,
  type JsonObject,
  type Run,
  type WorkerPort,
} from '../ledger/index.js';
import type { Logger } from '../log.js';
import { errorResult } from '../mcp/tool.js';
import type { RunService } from '../runs.js';

/** Where the proxy's marks go in a result's `_meta`, so the upstream's own result shape is kept. */
export const META_RUN_ID = 'io.runledger/run_id';
export const META_REPLAYED = 'io.runledger/replayed';
/** Set on an answer from a call sent once more after its first outcome was lost (an idempotent tool). */
export const META_RESENT = 'io.runledger/resent';
/** Sent upstream with a fenced call, for servers that understand idempotency keys. */
export const META_KEY = 'io.runledger/idempotency_key';

/** How a forwarded call ended, as the fence needs to know it. */
export type Forwarded =
  | { kind: 'answer'; result: CallToolResult }
  /** The upstream refused it with a JSON-RPC error: it did nothing, and the error goes back as it came. */
  | { kind: 'refused'; error: Error }
  /** The call never reached the upstream (it could not be started or connected to): it did nothing. */
  | { kind: 'unreachable'; error: UpstreamUnavailableError }
  /** The call was sent but its answer never came (the connection dropped, a timeout): unknown. */
  | { kind: 'unknown'; error: unknown };

export interface FencedCall {
  tenant: string;
  tool: string;
  key: string;
  /** The arguments without the key: what the fingerprint covers. */
  args: JsonObject;
  /** The tool says repeating a call has no further effect: an unknown outcome may be sent once more. */
  idempotent: boolean;
  /** Sends the call upstream; called at most once per attempt, and only by the attempt's lease holder. */
  forward(runId: string): Promise<Forwarded>;
}

/** The worker verbs the fence uses: it is an executor of its own runs, as the engine is of its. */
export type FenceLedger = Pick<WorkerPort, 'leaseMs' | 'start' | 'claimRun' | 'renew' | 'finish' | 'fail' | 'forget'>;

export interface FenceOptions {
  ledger: FenceLedger;
  /** Follows a run another process is answering. */
  runs: RunService;
  /** How long a retry waits for a call in flight before answering call_in_progress. */
  waitMs: number;
  /** Let a key be used again after an isError answer, instead of replaying that answer. */
  retryErrors: boolean;
  /** Names the upstream in each charge (the provider column of get_usage). */
  upstreamName: string;
  log: Logger;
}

/** A proxy session has no poll_run: the original answer is had by calling again as first called. */
const FOLLOW_IN_PROXY =
  'To get the original call’s answer, call again with this idempotency_key and the original arguments.';

/** A proxied call resent after an unknown outcome is sent at most this many times in all. */
const MAX_SENDS_OF_IDEMPOTENT = 2;

export class Fence {
  readonly owner = processOwner('proxy');
  /** Calls this process is forwarding now: a duplicate here awaits the same answer. */
  private readonly inFlight = new Map<string, Promise<CallToolResult>>();

  constructor(private readonly opts: FenceOptions) {}

  async call(call: FencedCall): Promise<CallToolResult> {
    const { runs, ledger } = this.opts;
    const deadline = Date.now() + this.opts.waitMs;
    const inProgress = (runId: string) =>
      new CallInProgressError(call.tool, runId, Math.round(this.opts.waitMs / 1000));
    const fp = fingerprint(call.args);
    for (;;) {
      const outcome = await ledger.start(
        {
          tenant: call.tenant,
          tool: call.tool,
          executor: 'proxy',
          idempotencyKey: call.key,
          args: call.args,
          fingerprint: fp,
          cost: 0,
        },
        this.owner,
      );
      if (outcome.kind === 'conflict')
        throw new IdempotencyKeyReusedError(outcome.runId, outcome.differingFields, outcome.createdAt, FOLLOW_IN_PROXY);
      if (outcome.kind === 'created') return marked(await this.send(call, outcome.run), outcome.run.id, 'first');
      let run = outcome.run;
      try {
        for (;;) {
          if (isTerminal(run.phase)) return marked(storedAnswer(run), run.id, 'replayed');
          const local = this.inFlight.get(run.id);
          if (local !== undefined) {
            const answer = await beforeDeadline(local, deadline);
            if (answer === undefined) throw inProgress(run.id);
            return marked(answer, run.id, 'replayed');
          }
          // Its holder's lease ran out, or its holder is a process of this host that has died: whoever
          // started it is gone without an answer. Take the run, so only one retry decides.
          const holderLeft =
            run.lease === null || Date.parse(run.lease.expiresAt) <= Date.now() || holderGone(run.lease.holder);
          if (holderLeft) {
            const taken = await ledger.claimRun(run.id, this.owner);
            if (taken !== null) return await this.takeOver(call, taken);
          }
          const left = deadline - Date.now();
          if (left <= 0) throw inProgress(run.id);
          // Wake at the latest when the holder's lease would run out, to take over if it has died.
          const untilTakeover = holderLeft || run.lease === null ? 0 : Date.parse(run.lease.expiresAt) - Date.now() + 5;
          run = (
            await runs.follow(call.tenant, run, { waitSeconds: Math.max(50, Math.min(left, untilTakeover)) / 1000 })
          ).run;
        }
      } catch (err) {
        // The first call failed without doing anything and was forgotten: this retry goes again.
        if (err instanceof NotFoundError) continue;
        throw err;
      }
    }
  }

  /**
   * A run left started with no answer: send once more if the tool is idempotent (the answer says it was
   * re-sent, not replayed), else end it unknown; nothing is sent then, so that answer is a replay.
   */
  private async takeOver(call: FencedCall, run: Run): Promise<CallToolResult> {
    if (call.idempotent && run.attempts <= MAX_SENDS_OF_IDEMPOTENT) {
      this.opts.log.warn('resending a call whose first answer was never recorded (the tool is idempotent)', {
        run_id: run.id,
        tool: call.tool,
      });
      return marked(await this.send(call, run), run.id, 'resent');
    }
    const error = new OutcomeUnknownError(call.tool, run.id, run.createdAt);
    const ended = await this.opts.ledger.fail(run.id, this.owner, error.toJSON());
    return marked(storedAnswer(ended ?? (await this.opts.runs.get(call.tenant, run.id))), run.id, 'replayed');
  }

  /** Forwards the call for a run this process holds, renewing its lease until the answer is stored. */
  private send(call: FencedCall, run: Run): Promise<CallToolResult> {
    const { ledger } = this.opts;
    const renew = setInterval(
      () => void ledger.renew(run.id, this.owner).catch(() => undefined),
      Math.max(250, ledger.leaseMs / 3),
    );
    const answer = this.forward(call, run).finally(() => {
      clearInterval(renew);
      this.inFlight.delete(run.id);
    });
    this.inFlight.set(run.id, answer);
    return answer;
  }

  /**
   * The call sent upstream, and what the ledger keeps of it: the answer is stored before it goes back
   * to the caller, without waiting for the disk. That commit survives this process being killed; were
   * it lost with the machine's power, a retry would hear outcome_unknown, and the call itself would
   * still never be repeated. Duplicates in this process get the answer from the in-flight map.
   */
  private async forward(call: FencedCall, run: Run): Promise<CallToolResult> {
    const { ledger } = this.opts;
    const sent = await call.forward(run.id);
    if (sent.kind === 'refused' || sent.kind === 'unreachable') {
      await ledger.forget(run.id, this.owner);
      throw sent.error;
    }
    if (sent.kind === 'unknown') {
      this.opts.log.warn('a forwarded call got no answer', {
        run_id: run.id,
        tool: call.tool,
        error: String(sent.error),
      });
      // Sending an idempotent call again is harmless, so its key stays free for the retry.
      if (call.idempotent) {
        await ledger.forget(run.id, this.owner);
        throw new UpstreamUnavailableError(
          `The upstream MCP server did not answer the ${call.tool} call (${String(sent.error)}); the tool is idempotent, so its key was left free.`,
          sent.error,
          'Retry with the same idempotency_key: the call is sent again, which the tool says is harmless.',
        );
      }
      const ended = await ledger.fail(
        run.id,
        this.owner,
        new OutcomeUnknownError(call.tool, run.id, run.createdAt).toJSON(),
      );
      return storedAnswer(ended ?? (await this.opts.runs.get(call.tenant, run.id)));
    }
    const result = sent.result;
    if (result.isError === true && this.opts.retryErrors) {
      await ledger.forget(run.id, this.owner);
    } else if (
      (await ledger.finish(
        run.id,
        this.owner,
        result as JsonObject,
        { provider: this.opts.upstreamName, model: null },
        false,
      )) === null
    ) {
      this.opts.log.warn('the answer came after this proxy lost the call to another; it was not stored', {
        run_id: run.id,
        tool: call.tool,
      });
    }
    return result;
  }
}

/** The answer a finished run keeps: the upstream's result, or the error that ended it, as it was first given. */
function storedAnswer(run: Run): CallToolResult {
  if (run.phase === Phase.done && run.result !== null) return run.result as CallToolResult;
  if (run.error?.code === ErrorCode.outcomeUnknown)
    return errorResult(new OutcomeUnknownError(run.tool, run.id, run.createdAt));
  const { code, message, details } = run.error ?? {
    code: ErrorCode.internalError,
    message: `The call ended ${run.phase} without an answer.`,
    details: {},
  };
  return errorResult(new RunledgerError(code, message, { details, fix: 'A new idempotency_key makes a new call.' }));
}

/** The promise's value, or undefined once the deadline has passed first. */
async function beforeDeadline<T>(promise: Promise<T>, deadline: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>(
    (resolve) => (timer = setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now()))),
  );
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** How an answer came about: this call's own upstream call, a stored outcome, or a second send. */
type Provenance = 'first' | 'replayed' | 'resent';

function marked(result: CallToolResult, runId: string, how: Provenance): CallToolResult {
  const marks = {
    [META_RUN_ID]: runId,
    [META_REPLAYED]: how === 'replayed',
    ...(how === 'resent' ? { [META_RESENT]: true } : {}),
  };
  return { ...result, _meta: { ...result._meta, ...marks } };
}
