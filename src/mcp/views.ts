// What an agent sees of a run: structured content for programs, and text that says what to do next.
// URIs are added here; the ledger stores none.
import type { CallToolResult, ContentBlock } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { isBilled, isTerminal, Phase, type Run, type Usage } from '../ledger/index.js';
import { resultOf, seedOf } from '../run-result.js';
import { phaseSchema } from './fields.js';
import { RUN_REQUEST_META } from './run-card.js';
import { assetUri } from './uris.js';
import { outputSchemaOf } from './tool.js';

/** Inline a finished image in a tool result only when it is this small; links always come. */
export const INLINE_IMAGE_MAX_BYTES = 96 * 1024;

const errorSchema = z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()) });

export const runViewSchema = z.object({
  run_id: z.string(),
  tool: z.string(),
  phase: phaseSchema,
  replayed: z.boolean().describe('true when this answer replays an earlier request with the same key'),
  created_at: z.string(),
  progress: z.number().min(0).max(1),
  phases: z.array(z.object({ phase: phaseSchema, at: z.string() })).describe('Every phase with its timestamp'),
  seed: z.number().int(),
  cost_credits: z.number().int(),
  billed: z.boolean(),
  attempts: z.number().int().describe('Workers that have taken the run, this one included'),
  stalls: z
    .number()
    .int()
    .describe(
      "Attempts in a row that failed on the run itself (its renderer died or ran too long on it); a worker's crash never counts",
    ),
  waiting: z
    .string()
    .nullable()
    .describe('Why a live run is waiting: its last worker stopped, or its last attempt failed on it'),
  assets: z.array(
    z.object({
      n: z.number().int(),
      uri: z.string(),
      mime: z.string(),
      size: z.number().int(),
      sha256: z.string(),
      width: z.number().int().nullable().describe("null when the file's header does not say"),
      height: z.number().int().nullable(),
      duration_seconds: z.number().optional().describe("A video's length, when its header says"),
    }),
  ),
  evaluation: z.record(z.string(), z.unknown()).nullable(),
  error: errorSchema.nullable(),
  next: z.string(),
});
export type RunView = z.output<typeof runViewSchema>;

export const dryRunSchema = z.object({
  outcome: z.enum(['create', 'replay', 'conflict']),
  run_id: z.string().nullable(),
  differing_fields: z.array(z.string()),
  message: z.string(),
});

/** The output schema of every tool that answers with a run (the create tools, poll_run). */
export const runOutputSchema = outputSchemaOf(runViewSchema, { dry_run: dryRunSchema });

export function runView(run: Run, replayed: boolean): RunView {
  const result = resultOf(run);
  return {
    run_id: run.id,
    tool: run.tool,
    phase: run.phase,
    replayed,
    created_at: run.createdAt,
    progress: run.progress,
    phases: run.phases,
    seed: result?.seed ?? seedOf(run),
    cost_credits: run.cost,
    billed: isBilled(run.phase),
    attempts: run.attempts,
    stalls: run.stalls,
    waiting: waitingReason(run, Date.now()),
    assets: (result?.assets ?? []).map((a) => ({ ...a, uri: assetUri(run.id, a.n) })),
    evaluation: (result?.evaluation as unknown as Record<string, unknown> | undefined) ?? null,
    error: run.error,
    next: nextStep(run),
  };
}

/** A live run that waits to be taken over (its worker is gone) or tried again (an attempt failed on it); say so, and until when. */
function waitingReason(run: Run, now: number): string | null {
  if (run.retryAt !== null) {
    const when = Date.parse(run.retryAt) <= now ? 'as soon as a worker is free' : `at ${run.retryAt}`;
    return `Its last attempt failed on the run itself (${run.stalls} in a row); it is tried again ${when}, resuming from its last recovery point.`;
  }
  if (run.lease === null || Date.parse(run.lease.expiresAt) > now) return null;
  return `Its last worker stopped before finishing (attempt ${run.attempts}); another worker takes it over as soon as one is free, resuming from its last recovery point.`;
}

function nextStep(run: Run): string {
  switch (run.phase) {
    case Phase.done:
      return 'Done and billed once. Read the images through their asset URIs (resources/read); calling create again with this key returns this same result for free.';
    case Phase.failed:
      return 'This run failed and was not billed. Sending the same key again returns this same failure; a new idempotency_key starts a new run.';
    case Phase.canceled:
      return 'This run was canceled and was not billed. A new idempotency_key starts a new run.';
    default:
      return `Still running (${run.phase}). Poll with poll_run and run_id ${run.id} (wait_seconds up to 50 blocks until it finishes); do not create again.`;
  }
}

export function runText(view: RunView): string {
  const head = `Run ${view.run_id} (${view.tool}) is ${view.phase}${view.replayed ? ' — a replay of the original request, not a new run' : ''}.`;
  const lines = [head];
  if (view.phase === Phase.done) {
    const score = view.evaluation?.score;
    const unscored = (view.evaluation?.unscored as { reason: string }[] | undefined) ?? [];
    const scoreText =
      typeof score === 'number'
        ? `Brand score ${score.toFixed(2)}`
        : unscored.length > 0
          ? `Not scored: ${unscored[0]!.reason}`
          : 'Brand score n/a';
    lines.push(`${describeAssets(view.assets)}, ${view.cost_credits} credits billed once. ${scoreText}.`);
  } else if (!isTerminal(view.phase)) {
    lines.push(`Progress ${Math.round(view.progress * 100)}%.`);
    if (view.waiting !== null) lines.push(view.waiting);
  }
  if (view.error !== null) lines.push(`Error ${view.error.code}: ${view.error.message}`);
  lines.push(view.next);
  return lines.join(' ');
}

/**
 * A run as a tool result: the view, a resource link per image (with its hash), and the first image
 * inline when `inlineImage` is given (the client asked, or this answer is the first to see it done)
 * and it is small. A replay of a finished run stays small: its links say where the bytes are.
 */
export async function runResult(
  run: Run,
  replayed: boolean,
  inlineImage?: () => Promise<{ bytes: Buffer; mime: string }>,
): Promise<CallToolResult> {
  if (inlineImage !== undefined) return withInlineImage(linkedResult(run, replayed), inlineImage);
  // A held lease can run out with nothing written, which changes what the answer says: not cached.
  if (!replayed || run.lease !== null) return linkedResult(run, replayed);
  // The ledger hands out the same Run object while a replayed run is unchanged: its answer is built once.
  let answer = replayAnswers.get(run);
  if (answer === undefined) replayAnswers.set(run, (answer = linkedResult(run, true)));
  return answer;
}

const replayAnswers = new WeakMap<Run, CallToolResult>();

function linkedResult(run: Run, replayed: boolean): CallToolResult {
  const view = runView(run, replayed);
  const content: ContentBlock[] = [{ type: 'text', text: runText(view) }];
  for (const asset of view.assets) {
    const size = asset.width === null || asset.height === null ? '' : `, ${asset.width}×${asset.height}`;
    const length = asset.duration_seconds === undefined ? '' : `, ${asset.duration_seconds} s`;
    content.push({
      type: 'resource_link',
      uri: asset.uri,
      name: `${run.tool}-${run.id}-${asset.n}.${EXTENSIONS[asset.mime] ?? 'bin'}`,
      mimeType: asset.mime,
      description: `${kindOf(asset.mime)} ${asset.n + 1} of ${view.assets.length}${size}${length}, sha256 ${asset.sha256}; read it with resources/read`,
    });
  }
  return {
    content,
    structuredContent: view as unknown as Record<string, unknown>,
    // For the run card's Reattach and Regenerate: the request behind the run, out of the model's sight.
    _meta: {
      [RUN_REQUEST_META]: { tool: `create_${run.tool}`, idempotency_key: run.idempotencyKey, arguments: run.args },
    },
    ...(run.phase === Phase.failed ? { isError: true } : {}),
  };
}

const EXTENSIONS: Record<string, string> = {
  'image/png': 'png',
  'image/jpeg': 'jpg',
  'image/webp': 'webp',
  'video/mp4': 'mp4',
  'video/webm': 'webm',
};
const kindOf = (mime: string) => (mime.startsWith('video/') ? 'Video' : 'Image');

/** "2 image(s)", "1 video". */
function describeAssets(assets: RunView['assets']): string {
  const videos = assets.filter((a) => a.mime.startsWith('video/')).length;
  const images = assets.length - videos;
  return [images > 0 || videos === 0 ? `${images} image(s)` : null, videos > 0 ? `${videos} video(s)` : null]
    .filter((p) => p !== null)
    .join(' and ');
}

async function withInlineImage(
  result: CallToolResult,
  image: () => Promise<{ bytes: Buffer; mime: string }>,
): Promise<CallToolResult> {
  const first = (result.structuredContent as RunView).assets[0];
  // Only a small image goes inline; a video is always a link.
  if (first === undefined || !first.mime.startsWith('image/') || first.size > INLINE_IMAGE_MAX_BYTES) return result;
  const { bytes, mime } = await image();
  return { ...result, content: [...result.content, { type: 'image', data: bytes.toString('base64'), mimeType: mime }] };
}

export function usageView(usage: Usage) {
  return {
    tenant: usage.tenant,
    runs: usage.runs,
    charges: usage.charges,
    credits: usage.credits,
    replays_absorbed: usage.replaysAbsorbed,
    by_tool: Object.fromEntries(
      Object.entries(usage.byTool).map(([tool, t]) => [
        tool,
        { runs: t.runs, charges: t.charges, credits: t.credits, replays_absorbed: t.replaysAbsorbed },
      ]),
    ),
    by_provider: usage.byProvider,
  };
}
