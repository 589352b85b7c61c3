// POST /webhooks/<provider> on the HTTP server: a webhook is believed only with a valid signature and a
// fresh timestamp (else 401, and nothing changes), is stored once however often it comes, is
// acknowledged and ignored for a run that is unknown or over, and — stored by any replica — wakes the
// replica that holds the run. Polling is slow in these tests, so what finishes a run fast is the webhook.
import { randomUUID } from 'node:crypto';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import { holderPid, openLedger } from '../../src/ledger/index.js';
import { signStandardWebhook } from '../../src/providers/webhook-signing.js';
import { startFakeFal, startFakeReplicate, type FakeProvider } from '../fixtures/jobs/fake-providers.js';
import { connectHttp, killAll, startHttp, type HttpProcess } from '../helpers/http.js';
import { definitionFor, freePort, providerEnv, VIDEO } from '../helpers/jobs.js';
import { freshSchema, PG_URL, postgresAvailable } from '../helpers/ledgers.js';
import { callTool, readLedger, runEnded, tempDb, until } from '../helpers/mcp.js';

const clients: Client[] = [];
const fakes: FakeProvider[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await killAll();
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

async function connect(server: HttpProcess): Promise<Client> {
  const client = await connectHttp(server.url);
  clients.push(client);
  return client;
}

/** Polled once a minute: only a webhook makes a run move sooner. */
const SLOW_POLL = { poll: { interval_ms: 60_000, max_interval_ms: 60_000 } };

function post(origin: string, runId: string, headers: Record<string, string>, body: string) {
  return fetch(`${origin}/webhooks/replicate?run=${runId}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
}

describe('webhooks on one server', () => {
  it('answers 401 to a bad signature or a stale timestamp and changes nothing; stores a webhook sent 5 times once, and asks the provider once for it', async () => {
    const fake = await startFakeReplicate();
    fakes.push(fake);
    const port = await freePort();
    const origin = `http://127.0.0.1:${port}`;
    const flags = [
      '--port',
      String(port),
      '--public-url',
      origin,
      '--provider-file',
      definitionFor('replicate', fake, SLOW_POLL),
      '--provider-for',
      'product_video=replicate',
      '--log-level',
      'debug',
      '--max-body-bytes',
      '4096',
    ];
    const db = tempDb();
    const server = await startHttp(db, flags, providerEnv('replicate', fake));
    const client = await connect(server);
    const created = await callTool(client, 'create_product_video', { ...VIDEO, idempotency_key: randomUUID() });
    const runId = created.run.run_id;
    const job = await fake.waitForJob();
    await until(
      async () => ((fake.stats.polls[job.id] ?? []).length === 1 ? true : undefined),
      'the first status read',
    );
    const before = await readLedger(db, (l) => l.getRun('local', runId));
    // Upstream it moves on; only a webhook can tell the server before its next poll, in a minute.
    fake.muteWebhooks(true);
    fake.run(job.id);

    const body = JSON.stringify({ id: job.id, status: 'processing', input: job.input });
    const now = Math.floor(Date.now() / 1000);
    const signed = (id: string, ts: number, secret = fake.webhookSecret) => ({
      'webhook-id': id,
      'webhook-timestamp': String(ts),
      'webhook-signature': signStandardWebhook(secret, id, ts, body),
    });
    const refusals = [
      await post(
        origin,
        runId,
        signed('msg_bad', now, `whsec_${Buffer.from('not the secret').toString('base64')}`),
        body,
      ),
      await post(
        origin,
        runId,
        {
          ...signed('msg_tampered', now),
          // One character changed, whatever it was: replacing it with a fixed one left 1 signature in 64 intact.
          'webhook-signature': signed('msg_tampered', now)['webhook-signature'].replace(/^v1,(.)/, (_, c: string) =>
            c === 'A' ? 'v1,B' : 'v1,A',
          ),
        },
        body,
      ),
      await post(origin, runId, signed('msg_stale', now - 600), body),
      await post(origin, runId, signed('msg_future', now + 600), body),
      await post(origin, runId, {}, body),
    ];
    expect(refusals.map((r) => r.status)).toEqual([401, 401, 401, 401, 401]);
    expect(await refusals[2]!.json()).toEqual({
      error: expect.stringMatching(/timestamp is \d+ s from this clock .*stale or replayed/),
    });
    expect(await readLedger(db, (l) => l.webhookDeliveries(runId))).toEqual([]);
    const after = await readLedger(db, (l) => l.getRun('local', runId));
    expect([after.phase, after.progress, after.phases]).toEqual([before.phase, before.progress, before.phases]);
    expect(fake.stats.polls[job.id]).toHaveLength(1);

    const answers = [];
    for (let i = 0; i < 5; i++) answers.push(await (await post(origin, runId, signed('msg_once', now), body)).json());
    expect(answers).toEqual([
      { outcome: 'stored', run_id: runId },
      ...Array.from({ length: 4 }, () => ({ outcome: 'duplicate', run_id: runId })),
    ]);
    // The one stored webhook made the holder ask the provider once, and the run moved on.
    await until(
      async () => ((await readLedger(db, (l) => l.getRun('local', runId))).progress === 0.6 ? true : undefined),
      'the run to move',
    );
    expect(fake.stats.polls[job.id]).toHaveLength(2);
    expect(server.stderr().match(/a webhook named the run: asking the provider now/g)).toHaveLength(1);
    expect(await readLedger(db, (l) => l.webhookDeliveries(runId))).toHaveLength(1);

    // Acknowledged and ignored: a run that does not exist, then (after it ends) the run itself.
    expect(await (await post(origin, 'run_nope', signed('msg_unknown', now), body)).json()).toEqual({
      outcome: 'ignored',
      reason: 'unknown_run',
    });
    fake.muteWebhooks(false);
    fake.finish(job.id, 'succeeded');
    expect((await runEnded(client, runId)).run.phase).toBe('done');
    const late = await post(origin, runId, signed('msg_late', now), body);
    expect([late.status, await late.json()]).toEqual([200, { outcome: 'ignored', reason: 'finished_run' }]);
    expect(fake.stats.submits).toBe(1);
    // Not behind the MCP tokens, but not open to anything else: only POST, only known providers, within the body limit.
    expect((await fetch(`${origin}/webhooks/replicate`)).status).toBe(405);
    expect((await fetch(`${origin}/webhooks/nobody`, { method: 'POST', body: '{}' })).status).toBe(404);
    expect((await post(origin, runId, signed('msg_big', now), JSON.stringify({ pad: 'x'.repeat(5000) }))).status).toBe(
      413,
    );
  });

  it('finishes a fal job on its signed (Ed25519) webhook long before the next poll', async () => {
    const fake = await startFakeFal();
    fakes.push(fake);
    const port = await freePort();
    const origin = `http://127.0.0.1:${port}`;
    const flags = [
      '--port',
      String(port),
      '--public-url',
      origin,
      '--provider-file',
      definitionFor('fal', fake, SLOW_POLL),
      '--provider-for',
      'product_video=fal',
    ];
    const db = tempDb();
    const server = await startHttp(db, flags, providerEnv('fal', fake));
    const client = await connect(server);
    const created = await callTool(client, 'create_product_video', { ...VIDEO, idempotency_key: randomUUID() });
    const job = await fake.waitForJob();
    expect(job.webhook).toBe(`${origin}/webhooks/fal?run=${created.run.run_id}`);
    await until(
      async () => ((fake.stats.polls[job.id] ?? []).length === 1 ? true : undefined),
      'the first status read',
    );
    fake.finish(job.id, 'succeeded');
    const done = await runEnded(client, created.run.run_id);
    expect(done.run).toMatchObject({
      phase: 'done',
      billed: true,
      assets: [expect.objectContaining({ mime: 'video/mp4' })],
    });
    expect(fake.stats.polls[job.id]).toHaveLength(2);
    expect(fake.stats.webhooks).toEqual([expect.objectContaining({ id: job.id, status: 200 })]);
    expect(fake.stats.submits).toBe(1);
  });
});

describe.skipIf(!(await postgresAvailable()))('webhooks across replicas on PostgreSQL', () => {
  it('finishes, on replica A that holds the run, a job whose webhook replica B received', async () => {
    const fake = await startFakeReplicate();
    fakes.push(fake);
    const schema = freshSchema();
    const port = await freePort();
    // The load balancer's address is B's: every webhook lands on B, which renders nothing.
    const publicUrl = `http://127.0.0.1:${port}`;
    const definition = definitionFor('replicate', fake, SLOW_POLL);
    const common = [
      '--db-schema',
      schema,
      '--db-pool-size',
      '4',
      '--public-url',
      publicUrl,
      '--provider-file',
      definition,
      '--provider-for',
      'product_video=replicate',
    ];
    const b = await startHttp(
      PG_URL,
      [...common, '--port', String(port), '--concurrency', '0'],
      providerEnv('replicate', fake),
    );
    const a = await startHttp(PG_URL, [...common, '--concurrency', '1'], providerEnv('replicate', fake));
    const created = await callTool(await connect(a), 'create_product_video', {
      ...VIDEO,
      idempotency_key: randomUUID(),
    });
    const runId = created.run.run_id;
    const job = await fake.waitForJob();
    await until(
      async () => ((fake.stats.polls[job.id] ?? []).length === 1 ? true : undefined),
      'the first status read',
    );
    const ledger = await openLedger({ url: PG_URL, schema, poolSize: 2 });
    try {
      expect(holderPid((await ledger.getRun('local', runId)).lease!.holder)).toBe(a.child.pid);
      fake.run(job.id);
      fake.finish(job.id, 'succeeded');
      const done = await runEnded(await connect(b), runId);
      expect(done.run).toMatchObject({ phase: 'done', billed: true, attempts: 1 });
      // Both webhooks went to B; A asked the provider after each instead of waiting out its minute.
      expect(fake.stats.webhooks.map((w) => `${w.event} ${w.status}`).sort()).toEqual(['completed 200', 'start 200']);
      expect((await ledger.webhookDeliveries(runId)).length).toBeGreaterThanOrEqual(1);
      expect(fake.stats.polls[job.id]!.length).toBeLessThanOrEqual(3);
      expect(fake.stats.submits).toBe(1);
      expect(await ledger.usage('local')).toMatchObject({ runs: 1, charges: 1 });
    } finally {
      await ledger.close();
    }
  });
});
