// create_<tool>: one MCP tool per catalogue entry. The machinery adds what every create tool must
// carry: the idempotency key, wait_seconds and dry_run fields, the billing and retry wording, and the
// fence behind it.
import { z } from 'zod';
import { BoundedMap } from '../bounded-map.js';
import { fingerprint, type JsonObject } from '../ledger/index.js';
import type { Preview, RunService } from '../runs.js';
import type { GenerationTool } from '../tool.js';
import { assertNotTooDeep, keySchema, parse, waitSchema } from './fields.js';
import { followOptions } from './progress.js';
import { ValidationFailedError } from '../errors.js';
import { RUN_CARD_TOOL_META } from './run-card.js';
import { createTaskResult } from './tasks.js';
import { defineTool, structured, type ToolEntry } from './tool.js';
import { runOutputSchema, runResult } from './views.js';

/** Said by every create tool, in words an agent follows. */
export const RETRY_WORDING =
  'The charge is made once, when the run reaches done; replays, failures and cancellations are free. ' +
  'The call answers at once with a run_id; while the run is still going, poll with poll_run and that run_id — ' +
  'do not create again. Make one new key (a UUID) per logical request; when retrying after a timeout or an ' +
  'error, send the SAME key — a new key starts a new, billed run.';

/** A create call's arguments, validated once per distinct text. */
interface ParsedCreate {
  idempotency_key: string;
  wait_seconds: number;
  dry_run: boolean;
  args: JsonObject;
  fingerprint: string;
}

/**
 * A retry re-sends the very same arguments, so validation and the fingerprint are kept per argument
 * text: a replay costs one JSON.stringify. Both are pure functions of that text, so a hit is always right.
 */
const PARSED_MAX = 2048;

function dryRunAnswer(preview: Preview) {
  switch (preview.outcome) {
    case 'create':
      return {
        outcome: 'create',
        run_id: null,
        differing_fields: [],
        message: `A new run would be created and billed ${preview.cost} credits when done.`,
      };
    case 'replay':
      return {
        outcome: 'replay',
        run_id: preview.runId,
        differing_fields: [],
        message: `This key replays run ${preview.runId}; nothing new would be billed.`,
      };
    case 'conflict':
      return {
        outcome: 'conflict',
        run_id: preview.runId,
        differing_fields: preview.differingFields,
        message: `This key belongs to run ${preview.runId} with different arguments; the call would be refused.`,
      };
  }
}

export function createTool(tool: GenerationTool, runs: RunService): ToolEntry {
  const input = tool.input
    .extend({
      idempotency_key: keySchema,
      wait_seconds: waitSchema,
      dry_run: z
        .boolean()
        .default(false)
        .describe('Check the arguments and the key without creating anything: answers create, replay or conflict.'),
    })
    .strict();
  const parsed = new BoundedMap<string, ParsedCreate>(PARSED_MAX);
  const parseCreate = (raw: unknown): ParsedCreate => {
    const text = JSON.stringify(raw ?? {});
    let known = parsed.get(text);
    if (known === undefined) {
      const { idempotency_key, wait_seconds, dry_run, ...args } = parse(input, raw) as Record<string, unknown> &
        Omit<ParsedCreate, 'args' | 'fingerprint'>;
      known = { idempotency_key, wait_seconds, dry_run, args, fingerprint: fingerprint(args) };
      parsed.set(text, known);
    }
    return known;
  };

  const entry = defineTool(
    `create_${tool.name}`,
    {
      title: tool.title,
      description: `${tool.description} ${RETRY_WORDING}`,
      input,
      output: runOutputSchema,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
      parse: parseCreate,
      meta: RUN_CARD_TOOL_META,
    },
    async (call, ctx) => {
      const request = { tool, idempotencyKey: call.idempotency_key, args: call.args, fingerprint: call.fingerprint };
      if (call.dry_run) {
        const answer = dryRunAnswer(await runs.preview(ctx.tenant, request));
        return structured({ dry_run: answer }, `Dry run: ${answer.message} Nothing was written.`);
      }
      const { run, replayed, reachedDone } = await runs.create(
        ctx.tenant,
        request,
        followOptions(ctx, call.wait_seconds),
      );
      return runResult(run, replayed, reachedDone ? () => runs.asset(ctx.tenant, run.id, 0) : undefined);
    },
  );
  return {
    definition: { ...entry.definition, execution: { taskSupport: 'optional' } },
    handle: entry.handle,
    // As a task the call answers at once with the run as the task: wait_seconds does not apply, and
    // a dry run creates nothing to follow.
    async startTask(raw, ctx) {
      assertNotTooDeep(raw);
      const call = parseCreate(raw);
      if (call.dry_run)
        throw new ValidationFailedError([
          { field: 'dry_run', rule: 'does not go with a task-augmented call, which starts a run' },
        ]);
      const request = { tool, idempotencyKey: call.idempotency_key, args: call.args, fingerprint: call.fingerprint };
      const { run, replayed } = await runs.create(ctx.tenant, request, { waitSeconds: 0 });
      return createTaskResult(run, replayed);
    },
  };
}
