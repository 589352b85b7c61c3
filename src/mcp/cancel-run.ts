// cancel_run: stop a live run before it is billed; idempotent.
import { z } from 'zod';
import type { RunService } from '../runs.js';
import { phaseSchema, runIdSchema } from './fields.js';
import { defineTool, outputSchemaOf, structured, type ToolEntry } from './tool.js';

const schema = z.object({ run_id: runIdSchema }).strict();

const outcomes = ['canceled', 'already_canceled', 'already_finished'] as const;

export function cancelRunTool(runs: RunService): ToolEntry {
  return defineTool(
    'cancel_run',
    {
      title: 'Cancel a run',
      description:
        'Stop a queued or running run; it is not billed. Canceling a canceled run is a no-op, and canceling a ' +
        'finished run changes nothing and says so.',
      input: schema,
      output: outputSchemaOf(
        z.object({ run_id: z.string(), phase: phaseSchema, outcome: z.enum(outcomes), message: z.string() }),
      ),
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    },
    async ({ run_id }, ctx) => {
      const { run, outcome } = await runs.cancel(ctx.tenant, run_id);
      const message = {
        canceled: `Run ${run_id} is canceled and will not be billed.`,
        already_canceled: `Run ${run_id} was already canceled; nothing changed.`,
        already_finished: `Run ${run_id} had already finished (${run.phase}); nothing changed.`,
      }[outcome];
      return structured({ run_id, phase: run.phase, outcome, message }, message);
    },
  );
}
