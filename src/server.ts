// Builds the MCP server from the tool catalogue, the ledger and the engine. Transports only connect it.
// The low-level Server is used (not McpServer) so that validation failures come back as typed
// `validation_failed` results an agent can act on, rather than the SDK's generic message.
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  CallToolRequestSchema,
  ErrorCode as RpcErrorCode,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  McpError,
  ReadResourceRequestSchema,
  type CallToolResult,
  type ContentBlock,
  type ServerNotification,
  type ServerRequest,
  type Tool,
  type ToolAnnotations,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { Engine } from './engine/engine.js';
import {
  asRunledgerError,
  ErrorCode,
  IdempotencyKeyReusedError,
  NotFoundError,
  ValidationFailedError,
  type RunledgerError,
} from './errors.js';
import { isTerminal, keyProblem, PHASES, type Phase, type Run, type RunLedger } from './ledger/index.js';
import { silentLogger, type Logger } from './log.js';
import type { GenerationTool } from './tool.js';
import { jsonSchemaOf, outputSchemaOf, runText, runView, runViewSchema, usageView } from './views.js';

export type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

export interface ServerDeps {
  ledger: RunLedger;
  engine: Engine;
  tools: readonly GenerationTool[];
  /** The tenant a request acts for: fixed over stdio, from the bearer token over HTTP. */
  tenantOf: (extra: Extra) => string;
  version: string;
  log?: Logger;
}

interface Context {
  tenant: string;
  extra: Extra;
}

interface ToolEntry {
  definition: Tool;
  handle(args: unknown, ctx: Context): Promise<CallToolResult>;
}

/** Inline a finished image in the tool result only when it is this small; links always come. */
const INLINE_IMAGE_MAX_BYTES = 96 * 1024;
const MAX_WAIT_SECONDS = 50;

const keySchema = z
  .string()
  .superRefine((key, ctx) => {
    const rule = keyProblem(key);
    if (rule !== null) ctx.addIssue({ code: 'custom', message: rule });
  })
  .describe(
    'Idempotency key: 16–128 printable ASCII characters. Make one new key (a UUID) per logical request; ' +
      'when retrying after a timeout or an error, send the SAME key — a new key starts a new, billed run.',
  );

const waitSchema = z
  .number()
  .min(0)
  .max(MAX_WAIT_SECONDS)
  .default(0)
  .describe(
    `Seconds (0–${MAX_WAIT_SECONDS}) to wait for the run to finish before answering, with progress notifications. ` +
      'Running out of wait is not an error: the answer says the run is still going.',
  );

const runIdSchema = z.string().min(1).max(100).describe('The run_id a create_* tool answered with.');

function parse<S extends z.ZodType>(schema: S, args: unknown): z.output<S> {
  const parsed = schema.safeParse(args ?? {});
  if (parsed.success) return parsed.data;
  throw new ValidationFailedError(
    parsed.error.issues.map((issue) => ({
      field: issue.path.length > 0 ? issue.path.join('.') : issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : '(arguments)',
      rule: issue.message,
    })),
  );
}

function inputSchemaOf(schema: z.ZodType): Tool['inputSchema'] {
  return jsonSchemaOf(schema, 'input') as Tool['inputSchema'];
}

function structured(value: object, text: string): CallToolResult {
  return { content: [{ type: 'text', text }], structuredContent: value as Record<string, unknown> };
}

function errorResult(err: RunledgerError): CallToolResult {
  return {
    content: [{ type: 'text', text: `${err.code}: ${err.message} ${err.fix}` }],
    structuredContent: { error: err.toJSON() },
    isError: true,
  };
}

/**
 * Tool definitions (their JSON Schemas take milliseconds to build) per catalogue: HTTP makes a server
 * per session, or per request when stateless, and all of them list the same tools.
 */
const definitionsByCatalogue = new WeakMap<readonly GenerationTool[], Map<string, Tool>>();

/**
 * Create arguments recently validated, by tool and exact text. A retry re-sends the very same
 * arguments, so a replay skips the schema walk; parsing is a pure function of that text, so a hit
 * is always right.
 */
const validatedCreates = new Map<string, Record<string, unknown>>();
const VALIDATED_MAX = 2048;

export function createServer(deps: ServerDeps): { server: Server; close(): Promise<void> } {
  const { ledger, engine } = deps;
  const log = deps.log ?? silentLogger;
  let definitions = definitionsByCatalogue.get(deps.tools);
  if (definitions === undefined) definitionsByCatalogue.set(deps.tools, (definitions = new Map()));
  const knownDefinitions = definitions;
  const define = (name: string, build: () => Omit<Tool, 'name'>): Tool => {
    let definition = knownDefinitions.get(name);
    if (definition === undefined) knownDefinitions.set(name, (definition = { name, ...build() }));
    return definition;
  };
  const byName = new Map(deps.tools.map((t) => [t.name, t]));
  const toolNames = [...byName.keys()];

  const server = new Server(
    { name: 'runledger', title: 'runledger — retry-safe generation', version: deps.version },
    {
      capabilities: { tools: {}, resources: {}, logging: {} },
      instructions:
        'Generation tools (create_*) answer at once with a run_id and render in the background. Give every ' +
        'logical request its own idempotency_key (a UUID) and send the SAME key when retrying: a retry returns ' +
        'the same run and is never billed twice. Follow a run with poll_run; do not create again to check on it.',
    },
  );

  /** Sends notifications/progress when the caller asked for them, only ever rising. */
  function progressReporter(extra: Extra): (run: Run) => Promise<void> {
    const token = extra._meta?.progressToken;
    let last = -1;
    return async (run) => {
      if (token === undefined || run.progress <= last) return;
      last = run.progress;
      await extra
        .sendNotification({
          method: 'notifications/progress',
          params: { progressToken: token, progress: run.progress, total: 1, message: `${run.phase} (${run.id})` },
        })
        .catch(() => undefined);
    };
  }

  async function follow(run: Run, waitSeconds: number, ctx: Context): Promise<Run> {
    if (waitSeconds <= 0 || isTerminal(run.phase)) return run;
    const report = progressReporter(ctx.extra);
    await report(run);
    return engine.waitFor(ctx.tenant, run.id, waitSeconds, { signal: ctx.extra.signal, onChange: report });
  }

  async function runResult(run: Run, replayed: boolean, tenant: string): Promise<CallToolResult> {
    const view = runView(run, replayed);
    const content: ContentBlock[] = [{ type: 'text', text: runText(view) }];
    for (const asset of view.assets) {
      content.push({
        type: 'resource_link',
        uri: asset.uri,
        name: `${run.tool}-${run.id}-${asset.n}.png`,
        mimeType: asset.mime,
        description: `Image ${asset.n + 1} of ${view.assets.length}, ${asset.width}×${asset.height}, sha256 ${asset.sha256}`,
      });
    }
    const first = view.assets[0];
    if (first !== undefined && first.size <= INLINE_IMAGE_MAX_BYTES) {
      const bytes = await ledger.readAsset(tenant, run.id, first.n);
      content.push({ type: 'image', data: bytes.bytes.toString('base64'), mimeType: bytes.mime });
    }
    return { content, structuredContent: view as unknown as Record<string, unknown>, ...(run.phase === 'failed' ? { isError: true } : {}) };
  }

  const runOutput = () =>
    outputSchemaOf(runViewSchema, {
      dry_run: z.object({
        outcome: z.enum(['create', 'replay', 'conflict']),
        run_id: z.string().nullable(),
        differing_fields: z.array(z.string()),
        message: z.string(),
      }),
    });

  function createTool(tool: GenerationTool): ToolEntry {
    const schema = tool.input
      .extend({
        idempotency_key: keySchema,
        wait_seconds: waitSchema,
        dry_run: z
          .boolean()
          .default(false)
          .describe('Check the arguments and the key without creating anything: answers create, replay or conflict.'),
      })
      .strict();
    type CreateArgs = Record<string, unknown> & { idempotency_key: string; wait_seconds: number; dry_run: boolean };
    const validate = (raw: unknown): CreateArgs => {
      const text = `${tool.name}\u0000${JSON.stringify(raw ?? {})}`;
      let parsed = validatedCreates.get(text);
      if (parsed === undefined) {
        parsed = parse(schema, raw) as Record<string, unknown>;
        if (validatedCreates.size >= VALIDATED_MAX) validatedCreates.delete(validatedCreates.keys().next().value as string);
        validatedCreates.set(text, parsed);
      }
      return parsed as CreateArgs;
    };
    return {
      definition: define(`create_${tool.name}`, () => ({
        title: tool.title,
        description: tool.description,
        inputSchema: inputSchemaOf(schema),
        outputSchema: runOutput(),
        annotations: { title: tool.title, readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
      })),
      async handle(raw, ctx) {
        const { idempotency_key, wait_seconds, dry_run, ...args } = validate(raw);
        const request = { tenant: ctx.tenant, tool: tool.name, idempotencyKey: idempotency_key, args, cost: tool.cost(args) };
        if (dry_run) {
          const preview = await ledger.preview(request);
          const dryRun =
            preview.kind === 'create'
              ? { outcome: 'create' as const, run_id: null, differing_fields: [], message: `A new run would be created and billed ${request.cost} credits when done.` }
              : preview.kind === 'replay'
                ? { outcome: 'replay' as const, run_id: preview.run.id, differing_fields: [], message: `This key replays run ${preview.run.id}; nothing new would be billed.` }
                : { outcome: 'conflict' as const, run_id: preview.runId, differing_fields: preview.differingFields, message: `This key belongs to run ${preview.runId} with different arguments; the call would be refused.` };
          return structured({ dry_run: dryRun }, `Dry run: ${dryRun.message} Nothing was written.`);
        }
        const outcome = await ledger.createOrReplay(request);
        if (outcome.kind === 'conflict') throw new IdempotencyKeyReusedError(outcome.runId, outcome.differingFields, outcome.createdAt);
        if (outcome.kind === 'created') {
          engine.wake();
          log.info('run created', { run_id: outcome.run.id, tool: tool.name, tenant: ctx.tenant });
        }
        const run = await follow(outcome.run, wait_seconds, ctx);
        return runResult(run, outcome.kind === 'replayed', ctx.tenant);
      },
    };
  }

  const toolNameSchema = z
    .string()
    .transform((name) => name.replace(/^create_/, ''))
    .refine((name) => byName.has(name), { message: `must be one of ${toolNames.join(', ')}` });

  const pollSchema = z
    .object({
      run_id: runIdSchema.optional(),
      idempotency_key: keySchema.optional(),
      tool: toolNameSchema.optional().describe(`With idempotency_key: the tool the run was created with (${toolNames.join(', ')}).`),
      wait_seconds: waitSchema,
    })
    .strict()
    .refine((a) => a.run_id !== undefined || (a.idempotency_key !== undefined && a.tool !== undefined), {
      message: 'give run_id, or idempotency_key together with tool',
    });

  const runIdOnly = z.object({ run_id: runIdSchema }).strict();

  const listSchema = z
    .object({
      tool: toolNameSchema.optional().describe('Only runs of this tool.'),
      phase: z.enum(PHASES as [Phase, ...Phase[]]).optional().describe('Only runs in this phase.'),
      limit: z.number().int().min(1).max(100).default(20).describe('Runs per page, 1–100.'),
      cursor: z.string().optional().describe('next_cursor from the previous page.'),
    })
    .strict();

  const readOnly: ToolAnnotations = { readOnlyHint: true, openWorldHint: false };

  const entries: ToolEntry[] = [
    ...deps.tools.map(createTool),
    {
      definition: define('poll_run', () => ({
        title: 'Poll a run',
        description:
          'Follow a run to its result: by run_id, or by idempotency_key + tool when the create answer was lost. ' +
          'Returns the phase, the phase history with timestamps, progress 0–1, and when done the images, their ' +
          'brand evaluation and the charge. wait_seconds (0–50) blocks until the run finishes, sending progress ' +
          'notifications. Polling never creates or bills anything.',
        inputSchema: inputSchemaOf(pollSchema),
        outputSchema: runOutput(),
        annotations: { title: 'Poll a run', ...readOnly },
      })),
      async handle(raw, ctx) {
        const args = parse(pollSchema, raw);
        const run =
          args.run_id !== undefined
            ? await ledger.getRun(ctx.tenant, args.run_id)
            : await ledger.findRun(ctx.tenant, args.tool!, args.idempotency_key!);
        return runResult(await follow(run, args.wait_seconds, ctx), false, ctx.tenant);
      },
    },
    {
      definition: define('cancel_run', () => ({
        title: 'Cancel a run',
        description:
          'Stop a queued or running run; it is not billed. Canceling a canceled run is a no-op, and canceling a ' +
          'finished run changes nothing and says so.',
        inputSchema: inputSchemaOf(runIdOnly),
        outputSchema: outputSchemaOf(
          z.object({ run_id: z.string(), phase: z.enum(PHASES as [Phase, ...Phase[]]), outcome: z.enum(['canceled', 'already_canceled', 'already_finished']), message: z.string() }),
        ),
        annotations: { title: 'Cancel a run', readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
      })),
      async handle(raw, ctx) {
        const { run_id } = parse(runIdOnly, raw);
        const { run, outcome } = await ledger.cancel(ctx.tenant, run_id);
        engine.notify(run_id);
        const message = {
          canceled: `Run ${run_id} is canceled and will not be billed.`,
          already_canceled: `Run ${run_id} was already canceled; nothing changed.`,
          already_finished: `Run ${run_id} had already finished (${run.phase}); nothing changed.`,
        }[outcome];
        return structured({ run_id, phase: run.phase, outcome, message }, message);
      },
    },
    {
      definition: define('list_runs', () => ({
        title: 'List runs',
        description: 'Runs newest first, optionally of one tool or in one phase; pass next_cursor back for the next page.',
        inputSchema: inputSchemaOf(listSchema),
        outputSchema: outputSchemaOf(
          z.object({
            runs: z.array(
              z.object({ run_id: z.string(), tool: z.string(), phase: z.string(), created_at: z.string(), progress: z.number(), billed: z.boolean() }),
            ),
            next_cursor: z.string().nullable(),
          }),
        ),
        annotations: { title: 'List runs', ...readOnly },
      })),
      async handle(raw, ctx) {
        const args = parse(listSchema, raw);
        const page = await ledger.listRuns(ctx.tenant, args);
        const runs = page.runs.map((r) => ({
          run_id: r.id,
          tool: r.tool,
          phase: r.phase,
          created_at: r.createdAt,
          progress: r.progress,
          billed: r.phase === 'done',
        }));
        const text =
          runs.length === 0
            ? 'No runs.'
            : runs.map((r) => `${r.run_id} ${r.tool} ${r.phase} ${r.created_at}`).join('\n') +
              (page.nextCursor === null ? '' : `\nMore: call list_runs with cursor ${page.nextCursor}`);
        return structured({ runs, next_cursor: page.nextCursor }, text);
      },
    },
    {
      definition: define('delete_run', () => ({
        title: 'Delete a run',
        description:
          'Delete a run and its images (a live run is canceled first). Its key stays reserved: a late retry with the ' +
          'same key gets not_found instead of starting a new run, until the retention window (7 days) ends.',
        inputSchema: inputSchemaOf(runIdOnly),
        outputSchema: outputSchemaOf(z.object({ run_id: z.string(), deleted: z.literal(true), message: z.string() })),
        annotations: { title: 'Delete a run', readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
      })),
      async handle(raw, ctx) {
        const { run_id } = parse(runIdOnly, raw);
        await ledger.deleteRun(ctx.tenant, run_id);
        engine.notify(run_id);
        const message = `Run ${run_id} and its images are deleted; its key stays reserved until the retention window ends.`;
        return structured({ run_id, deleted: true, message }, message);
      },
    },
    {
      definition: define('get_usage', () => ({
        title: 'Usage and charges',
        description: 'Runs, charges and credits for this tenant, and the replays absorbed: retries answered without a new billable run.',
        inputSchema: inputSchemaOf(z.object({}).strict()),
        outputSchema: outputSchemaOf(
          z.object({
            tenant: z.string(),
            runs: z.number().int(),
            charges: z.number().int(),
            credits: z.number().int(),
            replays_absorbed: z.number().int(),
            by_tool: z.record(z.string(), z.object({ runs: z.number(), charges: z.number(), credits: z.number(), replays_absorbed: z.number() })),
          }),
        ),
        annotations: { title: 'Usage and charges', ...readOnly },
      })),
      async handle(raw, ctx) {
        parse(z.object({}).strict(), raw);
        const usage = usageView(await ledger.usage(ctx.tenant));
        const text = `${usage.runs} runs, ${usage.charges} charges (${usage.credits} credits), ${usage.replays_absorbed} replays absorbed without billing.`;
        return structured(usage, text);
      },
    },
  ];
  const entryByName = new Map(entries.map((e) => [e.definition.name, e]));

  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: entries.map((e) => e.definition) }));

  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const entry = entryByName.get(request.params.name);
    if (entry === undefined) {
      throw new McpError(RpcErrorCode.InvalidParams, `Unknown tool ${request.params.name}; tools/list names the tools.`);
    }
    try {
      return await entry.handle(request.params.arguments, { tenant: deps.tenantOf(extra), extra });
    } catch (e) {
      const err = asRunledgerError(e);
      if (err.code === ErrorCode.internalError) {
        log.error('internal error', { tool: request.params.name, error: err.message, cause: String(err.cause) });
        throw new McpError(RpcErrorCode.InternalError, err.message);
      }
      return errorResult(err);
    }
  });

  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
    resourceTemplates: [
      { uriTemplate: 'runs://{run_id}', name: 'run', title: 'A run as JSON', mimeType: 'application/json' },
      { uriTemplate: 'runs://{run_id}/assets/{n}', name: 'run-asset', title: 'An image a run produced', mimeType: 'image/png' },
    ],
  }));

  server.setRequestHandler(ListResourcesRequestSchema, async (_request, extra) => {
    const page = await ledger.listRuns(deps.tenantOf(extra), { limit: 50 }).catch((e: unknown) => {
      throw new McpError(RpcErrorCode.InternalError, asRunledgerError(e).message);
    });
    return {
      resources: page.runs.map((r) => ({
        uri: `runs://${r.id}`,
        name: r.id,
        title: `${r.tool} run (${r.phase})`,
        mimeType: 'application/json',
      })),
    };
  });

  server.setRequestHandler(ReadResourceRequestSchema, async (request, extra) => {
    const uri = request.params.uri;
    const match = /^runs:\/\/([^/]+)(?:\/assets\/(\d+))?$/.exec(uri);
    if (match === null) throw new McpError(-32002, `Resource not found: ${uri}. Run URIs look like runs://{run_id} or runs://{run_id}/assets/{n}.`);
    const [, runId, n] = match as unknown as [string, string, string | undefined];
    const tenant = deps.tenantOf(extra);
    try {
      if (n === undefined) {
        const run = await ledger.getRun(tenant, runId);
        return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify(runView(run, false), null, 2) }] };
      }
      const asset = await ledger.readAsset(tenant, runId, Number(n));
      return { contents: [{ uri, mimeType: asset.mime, blob: asset.bytes.toString('base64') }] };
    } catch (e) {
      const err = asRunledgerError(e);
      throw new McpError(err instanceof NotFoundError ? -32002 : RpcErrorCode.InternalError, `${err.message} ${err.fix}`, { uri });
    }
  });

  return { server, close: () => server.close() };
}
