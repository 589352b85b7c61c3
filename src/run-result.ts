// What a finished run holds: written by the engine, read by every surface. It stores no URIs: those
// belong to the MCP surface, which adds them when it shows a run.
import type { Run } from './ledger/index.js';
import type { Evaluation } from './rubric/index.js';

export interface AssetSummary {
  n: number;
  sha256: string;
  mime: string;
  size: number;
  /** Null when the file's header does not say (a video in a container read no further). */
  width: number | null;
  height: number | null;
  /** A video's length, when its header says. */
  duration_seconds?: number;
}

export interface RunEvaluation {
  /** Mean of the variants' scores, each honouring the brand kit's weights; null when nothing could be scored (a video). */
  score: number | null;
  passed: number;
  tested: number;
  /** Each scored output; `scored: "poster frame"` where a video was scored by its poster frame. */
  variants: (Evaluation & { n: number; scored?: 'poster frame' })[];
  /** Outputs the rubric did not score, each with why (a video without a poster frame): never a made-up score. */
  unscored?: { n: number; mime: string; reason: string }[];
}

export interface RunResult {
  seed: number;
  /** What made the images: the provider, its version, and the model a remote provider used. */
  generator: { provider: string; version: string; model: string | null };
  /** A job provider's job that made the outputs. */
  job?: { provider: string; id: string };
  assets: AssetSummary[];
  evaluation: RunEvaluation;
}

/** The result of a done run, typed; null before then. The ledger stores it as opaque JSON. */
export function resultOf(run: Pick<Run, 'result'>): RunResult | null {
  return run.result as unknown as RunResult | null;
}

/** The seed used when the caller gives none: taken from the fingerprint, so a replay gets the same one. */
export function derivedSeed(fingerprint: string): number {
  return Number.parseInt(fingerprint.slice(0, 8), 16);
}

export function seedOf(run: Pick<Run, 'args' | 'fingerprint'>): number {
  return typeof run.args.seed === 'number' ? run.args.seed : derivedSeed(run.fingerprint);
}
