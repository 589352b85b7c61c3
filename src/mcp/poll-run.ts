// poll_run: follow a run to its result, by run_id or by the key it was created with.
import { z } from 'zod';
import type { RunService } from '../runs.js';
import type { GenerationTool } from '../tool.js';
import { keySchema, runIdSchema, toolNameSchema, waitSchema } from './fields.js';
import { followOptions } from './progress.js';
import { RUN_CARD_TOOL_META } from './run-card.js';
import { defineTool, READ_ONLY, type ToolEntry } from './tool.js';
import { runOutputSchema, runResult } from './views.js';

function schema(toolNames: string[]) {
  return z
    .object({
      run_id: runIdSchema.optional(),
      idempotency_key: keySchema.optional(),
      tool: toolNameSchema(toolNames)
        .optional()
        .describe(`With idempotency_key: the tool the run was created with (${toolNames.join(', ')}).`),
      wait_seconds: waitSchema,
      inline_image: z
        .boolean()
        .default(false)
        .describe(
          'When the run is done, also return its first image inline (base64), if under 96 KiB. Links to every image always come.',
        ),
    })
    .strict()
    .refine((a) => a.run_id !== undefined || (a.idempotency_key !== undefined && a.tool !== undefined), {
      message: 'must name the run: give run_id, or idempotency_key together with tool',
    });
}

export function pollRunTool(runs: RunService, tools: readonly GenerationTool[]): ToolEntry {
  return defineTool(
    'poll_run',
    {
      title: 'Poll a run',
      description:
        'Follow a run to its result: by run_id, or by idempotency_key + tool when the create answer was lost. ' +
        'Returns the phase, the phase history with timestamps, progress 0–1, and when done links to the images ' +
        '(with their SHA-256), their brand evaluation and the charge. wait_seconds (0–50) blocks until the run ' +
        'finishes, sending progress notifications. Polling never creates or bills anything.',
      input: schema(tools.map((t) => t.name)),
      output: runOutputSchema,
      annotations: READ_ONLY,
      meta: RUN_CARD_TOOL_META,
    },
    async (args, ctx) => {
      const run =
        args.run_id !== undefined
          ? await runs.get(ctx.tenant, args.run_id)
          : await runs.find(ctx.tenant, args.tool!, args.idempotency_key!);
      const { run: followed, reachedDone } = await runs.follow(ctx.tenant, run, followOptions(ctx, args.wait_seconds));
      const inline = args.inline_image || reachedDone ? () => runs.asset(ctx.tenant, followed.id, 0) : undefined;
      return runResult(followed, false, inline);
    },
  );
}
