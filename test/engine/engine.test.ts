// The engine in process: phases, recovery points and the give-up rule, on every ledger backend.
import { afterEach, describe, expect, it } from 'vitest';
import { catalogue } from '../../tools/index.js';
import productShot from '../../tools/product_shot.js';
import { Engine } from '../../src/engine/engine.js';
import { runTask, type Task } from '../../src/engine/tasks.js';
import { ThreadDied, type ThreadPool } from '../../src/engine/threads.js';
import { MAX_STALLS, Phase, type Run, type RunLedger } from '../../src/ledger/index.js';
import { RunService } from '../../src/runs.js';
import { backends } from '../helpers/ledgers.js';

const ledgers: RunLedger[] = [];
const engines: Engine[] = [];
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.stop()));
  await Promise.all(ledgers.splice(0).map((l) => l.close()));
});

/** The run once it has ended (or after 30 s). */
async function ended(ledger: RunLedger, runId: string): Promise<Run> {
  const runs = new RunService(ledger);
  try {
    return (await runs.follow('local', await ledger.getRun('local', runId), { waitSeconds: 30 })).run;
  } finally {
    runs.close();
  }
}

const CARD = {
  tenant: 'local',
  tool: 'social_card',
  idempotencyKey: 'engine-test-key-0001',
  args: { headline: 'Engine' },
  cost: 2,
};

describe.each(backends)('engine on $name', ({ open }) => {
  async function setup(clock?: () => number) {
    const ledger = await open({ leaseMs: 1000, ...(clock ? { clock } : {}) });
    const engine = new Engine({ ledger, tools: catalogue, concurrency: 1, idlePollMs: 20 });
    ledgers.push(ledger);
    engines.push(engine);
    return { ledger, engine };
  }

  it('takes a run through every phase, scores it and bills it once', async () => {
    const { ledger, engine } = await setup();
    const created = await ledger.createOrReplay(CARD);
    if (created.kind !== 'created') throw new Error(created.kind);
    engine.start();
    const run = await ended(ledger, created.run.id);
    expect(run.phase).toBe(Phase.done);
    expect(run.result).toMatchObject({ evaluation: { score: 1 }, assets: [{ n: 0, mime: 'image/png' }] });
    expect(await ledger.usage('local')).toMatchObject({ charges: 1, credits: 2 });
  });

  it('resumes a run taken over in rendering without composing again or re-rendering stored images', async () => {
    let now = Date.UTC(2026, 0, 1);
    const { ledger, engine } = await setup(() => now);
    await ledger.createOrReplay({
      ...CARD,
      tool: 'product_shot',
      args: { brief: 'A jar', product_name: 'Jar', variants: 2 },
      cost: 8,
    });
    // A first worker composed, rendered image 0 with bytes of its own, then died.
    const first = (await ledger.claim('dead-worker'))!;
    await ledger.advance(first.id, 'dead-worker', Phase.composing);
    const scenes = productShot.compose(productShot.input.parse(first.args), 7);
    await ledger.advance(first.id, 'dead-worker', Phase.rendering, { scenes: scenes as never });
    await ledger.checkpoint(first.id, 'dead-worker', 'evaluation/0', {
      score: 1,
      passed: 6,
      tested: 6,
      checks: [],
      skipped: [],
    });
    const marker = {
      bytes: Buffer.from('rendered-before-the-crash'),
      mime: 'image/png',
      meta: { width: 1, height: 1 },
    };
    await ledger.attachAsset(first.id, 'dead-worker', 0, marker, 0.7);
    now += 1001;
    engine.start();
    const run = await ended(ledger, first.id);
    expect(run.phase).toBe(Phase.done);
    expect(run.attempts).toBe(2);
    expect(run.phases.map((p) => p.phase)).toEqual(['queued', 'composing', 'rendering', 'done']);
    expect((await ledger.readAsset('local', first.id, 0)).bytes.toString()).toBe('rendered-before-the-crash');
    expect((await ledger.readAsset('local', first.id, 1)).bytes.subarray(1, 4).toString()).toBe('PNG');
    expect(await ledger.usage('local')).toMatchObject({ charges: 1, credits: 8 });
  });

  it('never fails a run whose workers each made progress before dying, however many died', async () => {
    let now = Date.UTC(2026, 0, 1);
    const { ledger, engine } = await setup(() => now);
    const created = await ledger.createOrReplay(CARD);
    if (created.kind !== 'created') throw new Error(created.kind);
    for (let i = 0; i < 3 * MAX_STALLS; i++) {
      const worker = `progressing-${i}`;
      expect((await ledger.claim(worker))?.id).toBe(created.run.id);
      expect(await ledger.checkpoint(created.run.id, worker, `note/${i}`, { i })).toBe(true);
      now += 1001;
    }
    engine.start();
    const run = await ended(ledger, created.run.id);
    expect(run).toMatchObject({ phase: Phase.done, stalls: 0, attempts: 3 * MAX_STALLS + 1 });
    expect(await ledger.usage('local')).toMatchObject({ charges: 1 });
  });

  it('finishes, billed once, a run whose workers all died on it without progress: a crash never counts against it', async () => {
    let now = Date.UTC(2026, 0, 1);
    const { ledger, engine } = await setup(() => now);
    const created = await ledger.createOrReplay(CARD);
    if (created.kind !== 'created') throw new Error(created.kind);
    for (let i = 0; i < 2 * MAX_STALLS; i++) {
      expect((await ledger.claim(`doomed-${i}`))?.id).toBe(created.run.id);
      now += 1001;
    }
    engine.start();
    const run = await ended(ledger, created.run.id);
    expect(run).toMatchObject({ phase: Phase.done, stalls: 0, attempts: 2 * MAX_STALLS + 1 });
    expect(await ledger.usage('local')).toMatchObject({ charges: 1 });
  });

  it(`fails a run whose renderer dies on it ${MAX_STALLS} times, unbilled, naming its attempts, while its neighbour finishes`, async () => {
    const ledger = await open({ leaseMs: 1000 });
    // A sandbox that dies on one scene, as a poison scene kills its render thread.
    const threads: ThreadPool = {
      run: async (task) => {
        const given = task as Task;
        if (given.kind === 'render' && JSON.stringify(given.scene).includes('POISON')) throw new ThreadDied(70);
        return runTask(given) as never;
      },
      close: async () => undefined,
    };
    const engine = new Engine({ ledger, tools: catalogue, threads, concurrency: 2, idlePollMs: 20 });
    ledgers.push(ledger);
    engines.push(engine);
    const poison = await ledger.createOrReplay({ ...CARD, args: { headline: 'POISON pill' } });
    const neighbour = await ledger.createOrReplay({
      ...CARD,
      idempotencyKey: 'engine-test-key-0002',
      args: { headline: 'Healthy' },
    });
    if (poison.kind !== 'created' || neighbour.kind !== 'created') throw new Error('expected two new runs');
    engine.start();
    expect(await ended(ledger, neighbour.run.id)).toMatchObject({ phase: Phase.done, stalls: 0 });
    const failed = await ended(ledger, poison.run.id);
    expect(failed).toMatchObject({ phase: Phase.failed, stalls: MAX_STALLS, attempts: MAX_STALLS });
    expect(failed.error).toMatchObject({
      code: 'generation_failed',
      message: expect.stringMatching(
        /^Gave up after 5 attempts, .*the last: the render thread died \(exit code 70\) while rendering image 1 of 1$/,
      ),
    });
    expect(await ledger.usage('local')).toMatchObject({ runs: 2, charges: 1 });
  });
});
