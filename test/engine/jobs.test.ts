// A job run's progress, in process: each new status the provider reports moves the run, a caller that
// waits hears it as progress notifications that only rise, and none comes after the call's answer.
import { readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../../src/engine/engine.js';
import { createThreadPool } from '../../src/engine/threads.js';
import { openSqliteLedger } from '../../src/ledger/sqlite/store.js';
import { createServer, mcpTools } from '../../src/mcp/server.js';
import { createBuiltinProvider, renderScene } from '../../src/providers/builtin.js';
import { parseDefinition } from '../../src/providers/definition.js';
import { providerSet, type AnyProvider } from '../../src/providers/index.js';
import { createJobProvider } from '../../src/providers/jobs.js';
import { RunService } from '../../src/runs.js';
import productVideo from '../../tools/product_video.js';
import { startFakeReplicate } from '../fixtures/jobs/fake-providers.js';
import { definitionFor, providerEnv, VIDEO } from '../helpers/jobs.js';

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

describe('a job run followed by its caller', () => {
  it('reports each new status as rising progress, and sends no progress notification after the answer', async () => {
    const fake = await startFakeReplicate();
    cleanup.push(() => fake.close());
    const definition = parseDefinition(JSON.parse(readFileSync(definitionFor('replicate', fake), 'utf8')), 'replicate');
    const ledger = await openSqliteLedger({ path: ':memory:' });
    cleanup.push(() => ledger.close());
    const threads = createThreadPool(0);
    const providers = providerSet(
      new Map<string, AnyProvider>([
        ['builtin', createBuiltinProvider(async (scene) => renderScene(scene))],
        ['replicate', createJobProvider(definition, providerEnv('replicate', fake))],
      ]),
      'builtin',
      new Map([['product_video', 'replicate']]),
    );
    const engine = new Engine({
      ledger,
      tools: [productVideo],
      providers,
      threads,
      concurrency: 1,
      idlePollMs: 20,
      jobs: { publicUrl: null, orphanSearchMs: 5000, maxOutputBytes: 1 << 24 },
    });
    engine.start();
    cleanup.push(() => engine.stop());
    const runs = new RunService(ledger);
    const { server } = createServer({
      runs,
      tools: mcpTools(runs, [productVideo]),
      tenantOf: () => 'local',
      version: 'test',
    });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    const client = new Client({ name: 'test', version: '0' });
    await client.connect(clientSide);
    cleanup.push(() => client.close());
    // Every message the client receives, in the order it receives them.
    const received: JSONRPCMessage[] = [];
    const deliver = clientSide.onmessage!;
    clientSide.onmessage = (message, extra) => {
      received.push(message);
      deliver(message, extra);
    };

    const answer = client.callTool(
      { name: 'create_product_video', arguments: { ...VIDEO, idempotency_key: randomUUID(), wait_seconds: 50 } },
      undefined,
      {
        onprogress: () => undefined,
        timeout: 60_000,
      },
    );
    const job = await fake.waitForJob();
    const progressOf = async () =>
      (await ledger.getRun('local', (await ledger.listRuns('local')).runs[0]!.id)).progress;
    await waitFor(async () => (await progressOf()) === 0.55);
    fake.run(job.id);
    await waitFor(async () => (await progressOf()) === 0.6);
    fake.finish(job.id, 'succeeded');
    const result = (await answer) as unknown as { structuredContent: { phase: string; progress: number } };
    expect(result.structuredContent).toMatchObject({ phase: 'done', progress: 1 });
    // Turns of the event loop and one more round trip: anything sent late would be here by now.
    for (let turn = 0; turn < 10; turn++) await new Promise((resolve) => setTimeout(resolve, 0));
    await client.listTools();

    const progress = received.flatMap((m) =>
      'method' in m && m.method === 'notifications/progress' ? [m.params as { progress: number; message: string }] : [],
    );
    const values = progress.map((p) => p.progress);
    expect(values).toEqual([...values].sort((a, b) => a - b));
    expect(new Set(values).size).toBe(values.length);
    expect(values).toEqual(expect.arrayContaining([0.55, 0.6, 1]));
    expect(progress.find((p) => p.progress === 0.6)?.message).toMatch(/^rendering \(run_/);
    const answeredAt = received.findIndex(
      (m) =>
        'result' in m && (m.result as { structuredContent?: { phase?: string } }).structuredContent?.phase === 'done',
    );
    const lastProgress = received.findLastIndex((m) => 'method' in m && m.method === 'notifications/progress');
    expect(answeredAt).toBeGreaterThan(lastProgress);
    expect(fake.stats.submits).toBe(1);
  });
});

async function waitFor(check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
