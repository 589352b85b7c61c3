// list_runs: a tenant's runs, newest first, with filters and cursor pagination.
import { z } from 'zod';
import { isBilled, MAX_PAGE_SIZE } from '../ledger/index.js';
import type { RunService } from '../runs.js';
import type { GenerationTool } from '../tool.js';
import { phaseSchema, toolNameSchema } from './fields.js';
import { defineTool, outputSchemaOf, READ_ONLY, structured, type ToolEntry } from './tool.js';

function schema(toolNames: string[]) {
  return z
    .object({
      tool: toolNameSchema(toolNames).optional().describe('Only runs of this tool.'),
      phase: phaseSchema.optional().describe('Only runs in this phase.'),
      limit: z.number().int().min(1).max(MAX_PAGE_SIZE).default(20).describe(`Runs per page, 1–${MAX_PAGE_SIZE}.`),
      cursor: z.string().optional().describe('next_cursor from the previous page.'),
    })
    .strict();
}

const listedRun = z.object({
  run_id: z.string(),
  tool: z.string(),
  idempotency_key: z.string(),
  phase: phaseSchema,
  created_at: z.string(),
  progress: z.number(),
  billed: z.boolean(),
});

export function listRunsTool(runs: RunService, tools: readonly GenerationTool[]): ToolEntry {
  return defineTool(
    'list_runs',
    {
      title: 'List runs',
      description:
        'Runs newest first, optionally of one tool or in one phase; pass next_cursor back for the next page.',
      input: schema(tools.map((t) => t.name)),
      output: outputSchemaOf(z.object({ runs: z.array(listedRun), next_cursor: z.string().nullable() })),
      annotations: READ_ONLY,
    },
    async (args, ctx) => {
      const page = await runs.list(ctx.tenant, args);
      const listed = page.runs.map((r) => ({
        run_id: r.id,
        tool: r.tool,
        idempotency_key: r.idempotencyKey,
        phase: r.phase,
        created_at: r.createdAt,
        progress: r.progress,
        billed: isBilled(r.phase),
      }));
      const text =
        listed.length === 0
          ? 'No runs.'
          : listed.map((r) => `${r.run_id} ${r.tool} ${r.phase} ${r.created_at} key ${r.idempotency_key}`).join('\n') +
            (page.nextCursor === null ? '' : `\nMore: call list_runs with cursor ${page.nextCursor}`);
      return structured({ runs: listed, next_cursor: page.nextCursor }, text);
    },
  );
}
