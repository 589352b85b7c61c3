// Waiting on a run inside a tool call: the SDK's abort signal, and notifications/progress when the
// caller sent a progress token, only ever rising.
import type { Run } from '../ledger/index.js';
import type { FollowOptions } from '../runs.js';
import type { Context } from './tool.js';

export function followOptions(ctx: Context, waitSeconds: number): FollowOptions {
  const token = ctx.extra._meta?.progressToken;
  if (waitSeconds <= 0 || token === undefined) return { waitSeconds, signal: ctx.extra.signal };
  let last = -1;
  const onChange = async (run: Run) => {
    if (run.progress <= last) return;
    last = run.progress;
    await ctx.extra
      .sendNotification({
        method: 'notifications/progress',
        params: { progressToken: token, progress: run.progress, total: 1, message: `${run.phase} (${run.id})` },
      })
      .catch(() => undefined);
  };
  return { waitSeconds, signal: ctx.extra.signal, onChange };
}
