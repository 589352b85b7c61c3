// The engine's thread pool: rendering and scoring take 50–200 ms of CPU an image, which on the main
// thread would stall every protocol message for that long. Threads start on demand, one per concurrent
// run. Compiled, the thread script sits beside this file; under the TypeScript test runner it does not
// exist, and tasks run in this thread.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { runTask, type Task, type TaskResult } from './tasks.js';
import type { ThreadReply } from './thread.js';

const THREAD_SCRIPT = fileURLToPath(new URL('./thread.js', import.meta.url));

/**
 * The thread running a task died (a native crash, out of memory): not the task's own error. A run
 * whose renderer keeps dying is failed by the stall rule, not at the first death.
 */
export class ThreadDied extends Error {
  constructor(readonly exitCode: number | null) {
    super(`the render thread died${exitCode === null ? '' : ` (exit code ${exitCode})`}`);
    this.name = 'ThreadDied';
  }
}

export interface ThreadPool {
  run<K extends Task['kind']>(task: Extract<Task, { kind: K }>): Promise<TaskResult[K]>;
  close(): Promise<void>;
}

export function createThreadPool(size: number): ThreadPool {
  if (size < 1 || !existsSync(THREAD_SCRIPT)) {
    return { run: async (task) => runTask(task) as never, close: async () => undefined };
  }
  type Job = { task: Task; resolve: (value: unknown) => void; reject: (err: Error) => void };
  const idle: Worker[] = [];
  const queue: Job[] = [];
  const busy = new Map<Worker, Job>();
  let nextId = 0;
  let started = 0;

  const dispatch = () => {
    while (queue.length > 0) {
      const worker = idle.pop() ?? (started < size ? spawn() : undefined);
      if (worker === undefined) return;
      const job = queue.shift()!;
      busy.set(worker, job);
      worker.postMessage({ id: nextId++, task: job.task });
    }
  };

  const spawn = (): Worker => {
    started++;
    // A heap bound per thread: a scene that would eat all memory kills its thread, not the server.
    const worker = new Worker(THREAD_SCRIPT, { resourceLimits: { maxOldGenerationSizeMb: 512 } });
    worker.unref();
    worker.on('message', (reply: ThreadReply) => {
      const job = busy.get(worker);
      busy.delete(worker);
      idle.push(worker);
      if (reply.ok) job?.resolve(reply.result);
      else job?.reject(new Error(reply.message));
      dispatch();
    });
    // A thread that dies fails its task as ThreadDied and is replaced on demand.
    worker.on('error', () => undefined);
    worker.on('exit', (code) => {
      const job = busy.get(worker);
      busy.delete(worker);
      const at = idle.indexOf(worker);
      if (at >= 0) idle.splice(at, 1);
      started--;
      job?.reject(new ThreadDied(code));
      dispatch();
    });
    return worker;
  };

  return {
    run: (task) =>
      new Promise((resolve, reject) => {
        queue.push({ task, resolve: resolve as (value: unknown) => void, reject });
        dispatch();
      }),
    close: async () => {
      await Promise.all([...idle, ...busy.keys()].map((w) => w.terminate()));
    },
  };
}
