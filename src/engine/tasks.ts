// The CPU-heavy work of a run, as tasks a thread can take: rendering a scene (the built-in provider)
// and scoring an image against the brand rubric. Plain data in and out, so they cross threads.
import type { BrandKit } from '../brand.js';
import type { Scene, SizeTarget } from '../compose/scene.js';
import { renderScene, type RenderedImage } from '../providers/builtin.js';
import { evaluate, type Evaluation, type Pixels } from '../rubric/index.js';
import { decodePixels, UndecodableImage } from '../rubric/pixels.js';

export interface ScoreInput {
  bytes: Uint8Array;
  mime: string;
  /** The pixels, when the provider has them already (the built-in one does): no decoding then. */
  pixels?: Pixels;
  brand: BrandKit;
  target: SizeTarget;
  /** The scene the image was rendered from; null for an image a prompt-based provider drew. */
  scene: Scene | null;
}

export type Task = { kind: 'render'; scene: Scene } | { kind: 'score'; input: ScoreInput };

export interface TaskResult {
  render: RenderedImage;
  score: Evaluation;
}

export function runTask(task: Task): TaskResult[Task['kind']] {
  return task.kind === 'render' ? renderScene(task.scene) : score(task.input);
}

function score(input: ScoreInput): Evaluation {
  let pixels: Pixels | { unreadable: string };
  try {
    pixels = input.pixels ?? decodePixels(input.bytes, input.mime);
  } catch (err) {
    if (!(err instanceof UndecodableImage)) throw err;
    pixels = { unreadable: err.message };
  }
  return evaluate(pixels, input.brand, input.target, input.scene);
}
