// delete_run: remove a run's images and keep a tombstone, so a late retry gets not_found, not a new run.
import { z } from 'zod';
import type { RunService } from '../runs.js';
import { runIdSchema } from './fields.js';
import { defineTool, outputSchemaOf, structured, type ToolEntry } from './tool.js';

const schema = z.object({ run_id: runIdSchema }).strict();

export function deleteRunTool(runs: RunService): ToolEntry {
  return defineTool(
    'delete_run',
    {
      title: 'Delete a run',
      description:
        'Delete a run and its images (a live run is canceled first). Its key stays reserved: a late retry with the ' +
        'same key gets not_found instead of starting a new run, until the retention window (7 days) ends.',
      input: schema,
      output: outputSchemaOf(z.object({ run_id: z.string(), deleted: z.literal(true), message: z.string() })),
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    },
    async ({ run_id }, ctx) => {
      await runs.delete(ctx.tenant, run_id);
      const message = `Run ${run_id} and its images are deleted; its key stays reserved until the retention window ends.`;
      return structured({ run_id, deleted: true, message }, message);
    },
  );
}
