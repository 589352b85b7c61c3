// get_usage: runs, charges and credits for the tenant, and the billable runs its retries saved.
import { z } from 'zod';
import type { RunService } from '../runs.js';
import { defineTool, outputSchemaOf, READ_ONLY, structured, type ToolEntry } from './tool.js';
import { usageView } from './views.js';

const schema = z.object({}).strict();

const counts = {
  runs: z.number().int(),
  charges: z.number().int(),
  credits: z.number().int(),
  replays_absorbed: z.number().int(),
};

export function getUsageTool(runs: RunService): ToolEntry {
  return defineTool(
    'get_usage',
    {
      title: 'Usage and charges',
      description:
        'Runs, charges and credits for this tenant, by tool and by image provider, and the replays absorbed: retries ' +
        'answered without a new billable run.',
      input: schema,
      output: outputSchemaOf(
        z.object({
          tenant: z.string(),
          ...counts,
          by_tool: z.record(z.string(), z.object(counts)),
          by_provider: z.record(z.string(), z.object({ charges: z.number().int(), credits: z.number().int() })),
        }),
      ),
      annotations: READ_ONLY,
    },
    async (_args, ctx) => {
      const usage = usageView(await runs.usage(ctx.tenant));
      const text = `${usage.runs} runs, ${usage.charges} charges (${usage.credits} credits), ${usage.replays_absorbed} replays absorbed without billing.`;
      return structured(usage, text);
    },
  );
}
