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
 * The thread running a task died (a native crash, out of memory) or ran past its time and was stopped.
 * A failure of the run's own, but perhaps not for good: it is tried again, and failed at the bound.
 */
export class ThreadDied extends Error {
  constructor(
    readonly exitCode: number | null,
    timedOutAfterMs?: number,
  ) {
    super(
      timedOutAfterMs !== undefined
        ? `the render thread ran past its ${timedOutAfterMs / 1000} s limit and was stopped`
        : `the render thread died${exitCode === null ? '' : ` (exit code ${exitCode})`}`,
    );
    this.name = 'ThreadDied';
  }
}

/** A render or score takes well under a second; a task this long is stuck (a scene that loops, say). */
export const TASK_TIMEOUT_MS = 60_000;

export interface ThreadPool {
  run<K extends Task['kind']>(task: Extract<Task, { kind: K }>): Promise<TaskResult[K]>;
  close(): Promise<void>;
}

export function createThreadPool(size: number, opts: { taskTimeoutMs?: number } = {}): ThreadPool {
  if (size < 1 || !existsSync(THREAD_SCRIPT)) {
    return { run: async (task) => runTask(task) as never, close: async () => undefined };
  }
  const timeoutMs = opts.taskTimeoutMs ?? TASK_TIMEOUT_MS;
  type Job = {
    task: Task;
    resolve: (value: unknown) => void;
    reject: (err: Error) => void;
    timer?: NodeJS.Timeout;
    timedOut?: boolean;
  };
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
      job.timer = setTimeout(() => {
        job.timedOut = true;
        void worker.terminate();
      }, timeoutMs).unref();
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
      clearTimeout(job?.timer);
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
      clearTimeout(job?.timer);
      busy.delete(worker);
      const at = idle.indexOf(worker);
      if (at >= 0) idle.splice(at, 1);
      started--;
      job?.reject(new ThreadDied(code, job.timedOut === true ? timeoutMs : undefined));
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
