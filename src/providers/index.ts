// A provider turns a composed scene into image bytes and scores them against the brand rubric. The
// engine passes the run id (plus the variant) as the provider's own idempotency key, so a resumed run
// never causes a second billable upstream call.
//
// The built-in provider renders on worker threads: rendering and scoring a 1080×1920 image takes
// ~200 ms of CPU, which on the main thread would stall every protocol message for that long.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { BrandKit } from '../brand.js';
import { evaluate, type Evaluation } from '../rubric/index.js';
import { GENERATOR_VERSION, renderScene } from './builtin.js';
import type { Scene } from './scene.js';

export interface Rendered {
  png: Buffer;
  width: number;
  height: number;
  evaluation: Evaluation;
}

export interface Provider {
  id: string;
  version: string;
  render(scene: Scene, brand: BrandKit, opts: { idempotencyKey: string }): Promise<Rendered>;
  close(): Promise<void>;
}

/** Render and score in this thread. */
export function renderAndScore(scene: Scene, brand: BrandKit): Rendered {
  const image = renderScene(scene);
  return { png: image.png, width: image.width, height: image.height, evaluation: evaluate(scene, image, brand) };
}

export interface RenderRequest {
  id: number;
  scene: Scene;
  brand: BrandKit;
}
export type RenderReply = { id: number; ok: true; rendered: Rendered } | { id: number; ok: false; message: string };

// Compiled, the worker script sits beside this file; under the TypeScript test runner it does not
// exist, and rendering stays in-thread.
const WORKER_SCRIPT = fileURLToPath(new URL('./render-worker.js', import.meta.url));

/** The built-in offline renderer: deterministic, so it needs no idempotency key of its own. */
export function createBuiltinProvider(threads: number): Provider {
  const base = { id: 'builtin', version: GENERATOR_VERSION };
  if (threads < 1 || !existsSync(WORKER_SCRIPT)) {
    return { ...base, render: async (scene, brand) => renderAndScore(scene, brand), close: async () => undefined };
  }
  return { ...base, ...workerPool(threads) };
}

function workerPool(size: number): Pick<Provider, 'render' | 'close'> {
  const idle: Worker[] = [];
  const queue: { request: RenderRequest; resolve: (r: Rendered) => void; reject: (e: Error) => void }[] = [];
  const busy = new Map<Worker, (typeof queue)[number]>();
  let nextId = 0;
  let created = 0;

  const dispatch = () => {
    while (queue.length > 0) {
      let worker = idle.pop();
      if (worker === undefined && created < size) worker = spawn();
      if (worker === undefined) return;
      const job = queue.shift()!;
      busy.set(worker, job);
      worker.postMessage(job.request);
    }
  };

  const spawn = (): Worker => {
    created++;
    const worker = new Worker(WORKER_SCRIPT);
    worker.unref();
    worker.on('message', (reply: RenderReply) => {
      const job = busy.get(worker);
      busy.delete(worker);
      idle.push(worker);
      if (job !== undefined) {
        if (reply.ok) {
          // The PNG arrives as a plain Uint8Array (structured clone); view it as a Buffer, no copy.
          const png = reply.rendered.png as Uint8Array;
          job.resolve({ ...reply.rendered, png: Buffer.from(png.buffer, png.byteOffset, png.byteLength) });
        } else job.reject(new Error(reply.message));
      }
      dispatch();
    });
    worker.on('error', (err) => {
      // A crashed worker fails its job and is replaced on demand.
      const job = busy.get(worker);
      busy.delete(worker);
      created--;
      job?.reject(err);
      dispatch();
    });
    return worker;
  };

  return {
    render: (scene, brand) =>
      new Promise<Rendered>((resolve, reject) => {
        queue.push({ request: { id: nextId++, scene, brand }, resolve, reject });
        dispatch();
      }),
    close: async () => {
      await Promise.all([...idle, ...busy.keys()].map((w) => w.terminate()));
    },
  };
}
