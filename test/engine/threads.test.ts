// The render sandbox, as built (worker threads run the compiled thread script): a scene that kills its
// thread or never finishes fails its task as ThreadDied, and the pool goes on serving the next one.
import { afterEach, describe, expect, it } from 'vitest';
import type * as Threads from '../../src/engine/threads.js';
import card from '../../tools/social_card.js';

// Read by the failpoints of each thread as it starts.
process.env.RUNLEDGER_FAILPOINTS = 'render-thread=KILLS,render-hang=LOOPS';
const built = new URL('../../dist/src/engine/threads.js', import.meta.url).href;
const { createThreadPool, ThreadDied } = (await import(built)) as typeof Threads;

const scene = (headline: string) => card.compose(card.input.parse({ headline }), 1)[0]!;

const pools: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
});

describe('the render thread pool', () => {
  it('fails a task whose thread dies, then renders the next scene on a new thread', async () => {
    const pool = createThreadPool(1);
    pools.push(pool);
    const died = await pool.run({ kind: 'render', scene: scene('KILLS its thread') }).catch((err: unknown) => err);
    expect(died).toBeInstanceOf(ThreadDied);
    expect((died as Error).message).toBe('the render thread died (exit code 70)');
    expect((await pool.run({ kind: 'render', scene: scene('Healthy') })).png.length).toBeGreaterThan(0);
  });

  it('stops a task that runs past its time, then renders the next scene', async () => {
    // Long enough for a healthy render on a new thread of a loaded machine, short for a test.
    const pool = createThreadPool(1, { taskTimeoutMs: 3000 });
    pools.push(pool);
    const started = Date.now();
    const stopped = await pool.run({ kind: 'render', scene: scene('LOOPS for ever') }).catch((err: unknown) => err);
    expect(stopped).toBeInstanceOf(ThreadDied);
    expect((stopped as Error).message).toBe('the render thread ran past its 3 s limit and was stopped');
    expect(Date.now() - started).toBeLessThan(30_000);
    expect((await pool.run({ kind: 'render', scene: scene('Healthy') })).png.length).toBeGreaterThan(0);
  });
});
