// The provider seam. A tool says what it asks for (a scene for the built-in renderer, a prompt for a
// prompt-based API); a provider turns one such request into image bytes. Scoring the image is the
// engine's own step afterwards, whatever drew it. Providers are chosen per tool, by configuration.
import type { Scene } from '../compose/scene.js';
import type { Pixels } from '../rubric/index.js';
import type { JobProvider } from './jobs.js';

/** What a tool asks a provider to draw: one image. */
export type ImageRequest =
  { kind: 'scene'; scene: Scene } | { kind: 'prompt'; prompt: string; width: number; height: number };

export interface GeneratedImage {
  bytes: Buffer;
  mime: string;
  width: number;
  height: number;
  /** The pixels, when the provider has them anyway (the built-in one): scoring then need not decode. */
  pixels?: Pixels;
  /** The provider's own id of the request, kept with the image for support and audits. */
  requestId?: string;
}

export interface Provider {
  readonly kind: 'image';
  /** Its name in configuration and in charges: `builtin`, `openai`. */
  readonly id: string;
  /** The model charged, when the provider has models. */
  readonly model: string | null;
  /** Part of every result: what made the images (with the model, for a remote provider). */
  readonly version: string;
  readonly accepts: ImageRequest['kind'];
  /**
   * Whether each call may cost money. Such a call is recorded ("requested") before it is made, so a
   * run resumed after a crash knows to re-send the same key rather than make a new call.
   */
  readonly billsPerCall: boolean;
  /** One image. The same idempotency key (the run id and the variant) always asks for the same image. */
  generate(request: ImageRequest, opts: { idempotencyKey: string; signal: AbortSignal }): Promise<GeneratedImage>;
  close(): Promise<void>;
}

/** An image provider (one call, one image), or a job provider (a queue API: submit, status, outputs). */
export type AnyProvider = Provider | JobProvider;

/** The provider each tool uses: one default, and overrides by tool name. */
export interface ProviderSet {
  forTool(tool: string): AnyProvider;
  /** A provider by its name in configuration. */
  named(name: string): AnyProvider | undefined;
  /** The job providers among them. */
  jobProviders(): JobProvider[];
  close(): Promise<void>;
}

export function providerSet(
  byName: Map<string, AnyProvider>,
  defaultName: string,
  perTool: Map<string, string>,
): ProviderSet {
  const get = (name: string) => {
    const provider = byName.get(name);
    if (provider === undefined) throw new Error(`no provider named ${name}`);
    return provider;
  };
  get(defaultName);
  for (const name of perTool.values()) get(name);
  return {
    forTool: (tool) => get(perTool.get(tool) ?? defaultName),
    named: (name) => byName.get(name),
    jobProviders: () => [...byName.values()].filter((p): p is JobProvider => p.kind === 'job'),
    close: async () => {
      await Promise.all([...byName.values()].map((p) => p.close()));
    },
  };
}
