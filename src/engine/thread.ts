// A worker thread of the engine's pool: runs one task per message (see tasks.ts).
import { parentPort } from 'node:worker_threads';
import { failpointArmed } from '../failpoints.js';
import { runTask, type Task } from './tasks.js';

export type ThreadReply = { id: number; ok: true; result: unknown } | { id: number; ok: false; message: string };

parentPort?.on('message', ({ id, task }: { id: number; task: Task }) => {
  // A test's poison scene: this thread dies as a native crash would, and the process lives on.
  if (task.kind === 'render' && failpointArmed('render-thread', JSON.stringify(task.scene))) process.exit(70);
  // A scene that never finishes rendering: the pool stops the thread at its time limit.
  if (task.kind === 'render' && failpointArmed('render-hang', JSON.stringify(task.scene))) for (;;);
  let reply: ThreadReply;
  try {
    reply = { id, ok: true, result: runTask(task) };
  } catch (err) {
    reply = { id, ok: false, message: err instanceof Error ? err.message : String(err) };
  }
  parentPort?.postMessage(reply);
});
