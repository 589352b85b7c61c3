// The MCP surface in process, through the SDK's linked in-memory transports.
import { createHash, randomUUID } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { catalogue as everyTool } from '../tools/index.js';

/** What a server serves without a job provider: the image tools (create_product_video needs one). */
const catalogue = everyTool.filter((tool) => tool.kind !== 'job');
import { Engine } from '../src/engine/engine.js';
import type { RunLedger } from '../src/ledger/index.js';
import { openSqliteLedger } from '../src/ledger/sqlite/store.js';
import { createServer, mcpTools } from '../src/mcp/server.js';
import { RunService } from '../src/runs.js';
import { backends } from './helpers/ledgers.js';
import { callTool, PRODUCT_SHOT, until } from './helpers/mcp.js';

let ledger: RunLedger;
let engine: Engine;
let client: Client;

async function connect(tenant = 'local', over: RunLedger = ledger): Promise<Client> {
  const runs = new RunService(over);
  const { server } = createServer({ runs, tools: mcpTools(runs, catalogue), tenantOf: () => tenant, version: 'test' });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const c = new Client({ name: 'test', version: '0' });
  await c.connect(clientSide);
  return c;
}

describe.each(backends)('MCP server on $name', ({ open }) => {
  beforeEach(async () => {
    ledger = await open();
    engine = new Engine({ ledger, tools: catalogue, concurrency: 1 });
    engine.start();
    client = await connect();
  });
  afterEach(async () => {
    await client.close();
    await engine.stop();
    await ledger.close();
  });

  describe('tools/list', () => {
    it('offers a create tool per catalogue entry plus the run tools, with annotations and schemas', async () => {
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      expect(names).toEqual([
        'create_product_shot',
        'create_social_card',
        'poll_run',
        'cancel_run',
        'list_runs',
        'delete_run',
        'get_usage',
      ]);
      const create = tools.find((t) => t.name === 'create_product_shot')!;
      expect(create.annotations).toMatchObject({ idempotentHint: true, readOnlyHint: false, destructiveHint: false });
      expect(create.description).toContain('send the SAME key — a new key starts a new, billed run');
      expect(create.inputSchema.required).toContain('idempotency_key');
      expect(create.inputSchema.properties).toHaveProperty('wait_seconds');
      expect(create.outputSchema).toBeDefined();
      expect(tools.find((t) => t.name === 'poll_run')!.annotations).toMatchObject({ readOnlyHint: true });
      expect(tools.find((t) => t.name === 'delete_run')!.annotations).toMatchObject({ destructiveHint: true });
    });
  });

  describe('create tools', () => {
    it('names the field and the rule when validation fails, and stores nothing', async () => {
      const key = randomUUID();
      const bad = await callTool(client, 'create_product_shot', { ...PRODUCT_SHOT, variants: 9, idempotency_key: key });
      expect(bad.result.isError).toBe(true);
      expect(bad.error?.code).toBe('validation_failed');
      expect(bad.error?.details.problems).toEqual([{ field: 'variants', rule: expect.stringMatching(/4/) }]);
      const text = bad.result.content[0]?.type === 'text' ? bad.result.content[0].text : '';
      expect(text).toMatch(/variants/);
      expect(text).toMatch(/same idempotency_key may be reused/);
      // The same key, corrected, creates the run.
      const good = await callTool(client, 'create_product_shot', {
        ...PRODUCT_SHOT,
        variants: 1,
        idempotency_key: key,
      });
      expect(good.run.replayed).toBe(false);
    });

    it('rejects a bad key and unknown fields as validation_failed', async () => {
      const short = await callTool(client, 'create_social_card', { headline: 'Hi', idempotency_key: 'too-short' });
      expect(short.error?.details.problems).toEqual([
        { field: 'idempotency_key', rule: expect.stringMatching(/16–128/) },
      ]);
      const typo = await callTool(client, 'create_social_card', {
        headline: 'Hi',
        idempotency_key: randomUUID(),
        headlne: 'x',
      });
      expect(typo.error).toMatchObject({ code: 'validation_failed', details: { problems: [{ field: 'headlne' }] } });
      const missing = await callTool(client, 'create_social_card', { headline: 'Hi' });
      expect(missing.error?.details.problems).toEqual([{ field: 'idempotency_key', rule: expect.any(String) }]);
      expect(await ledger.usage('local')).toMatchObject({ runs: 0 });
    });

    it('answers a 100,000-deep array in an argument with validation_failed naming the field and the limit, storing nothing', async () => {
      const bomb = JSON.parse('['.repeat(100_000) + ']'.repeat(100_000)) as unknown;
      const deep = await callTool(client, 'create_social_card', { headline: bomb, idempotency_key: randomUUID() });
      expect(deep.result.isError).toBe(true);
      expect(deep.error).toMatchObject({
        code: 'validation_failed',
        details: { problems: [{ field: 'headline', rule: expect.stringMatching(/64 levels/) }] },
      });
      expect(await ledger.usage('local')).toMatchObject({ runs: 0 });
    });

    it('answers a dry run with create, replay or conflict and writes nothing', async () => {
      const key = randomUUID();
      const dry = (args: object) =>
        callTool(client, 'create_social_card', { headline: 'Hi', idempotency_key: key, dry_run: true, ...args });
      expect((await dry({})).result.structuredContent).toMatchObject({ dry_run: { outcome: 'create', run_id: null } });
      expect(await ledger.usage('local')).toMatchObject({ runs: 0 });
      const created = await callTool(client, 'create_social_card', { headline: 'Hi', idempotency_key: key });
      expect((await dry({})).result.structuredContent).toMatchObject({
        dry_run: { outcome: 'replay', run_id: created.run.run_id },
      });
      expect((await dry({ headline: 'Bye' })).result.structuredContent).toMatchObject({
        dry_run: { outcome: 'conflict', run_id: created.run.run_id, differing_fields: ['headline'] },
      });
      expect(await ledger.usage('local')).toMatchObject({ runs: 1, replaysAbsorbed: 0 });
    });

    it('takes the per-call fields off before the ledger sees the arguments: another wait_seconds or dry_run: false is the same request', async () => {
      const key = randomUUID();
      const first = await callTool(client, 'create_social_card', { headline: 'Per call', idempotency_key: key });
      const again = await callTool(client, 'create_social_card', {
        headline: 'Per call',
        idempotency_key: key,
        wait_seconds: 0.1,
        dry_run: false,
      });
      expect(again.run).toMatchObject({ run_id: first.run.run_id, replayed: true });
      const stored = await ledger.getRun('local', first.run.run_id);
      for (const field of ['idempotency_key', 'wait_seconds', 'dry_run']) expect(stored.args).not.toHaveProperty(field);
    });

    it('echoes a seed derived from the arguments when none is given, the same on replay', async () => {
      const key = randomUUID();
      const first = await callTool(client, 'create_social_card', { headline: 'Seeds', idempotency_key: key });
      const again = await callTool(client, 'create_social_card', { headline: 'Seeds', idempotency_key: key });
      expect(Number.isInteger(first.run.seed)).toBe(true);
      expect(again.run.seed).toBe(first.run.seed);
      const seeded = await callTool(client, 'create_social_card', {
        headline: 'Seeds',
        seed: 42,
        idempotency_key: randomUUID(),
      });
      expect(seeded.run.seed).toBe(42);
    });

    it('says a run that is still going should be polled, not created again', async () => {
      const created = await callTool(client, 'create_product_shot', { ...PRODUCT_SHOT, idempotency_key: randomUUID() });
      if (created.run.phase !== 'done') {
        expect(created.run.next).toMatch(/poll_run/);
        expect(created.run.next).toMatch(/do not create again/);
      }
      const done = await callTool(client, 'poll_run', {
        run_id: created.run.run_id,
        wait_seconds: 50,
        inline_image: true,
      });
      expect(done.run).toMatchObject({ phase: 'done', billed: true, progress: 1 });
      expect(done.result.content.some((c) => c.type === 'image')).toBe(done.run.assets[0]!.size <= 96 * 1024);
    });
  });

  describe('finished runs', () => {
    it('inlines the image in the answer that first sees the run done, not in later replays, which link to it', async () => {
      const key = randomUUID();
      const first = await callTool(client, 'create_social_card', {
        headline: 'Keep it light',
        idempotency_key: key,
        wait_seconds: 50,
      });
      expect(first.run.phase).toBe('done');
      expect(first.result.content.some((c) => c.type === 'image')).toBe(true);
      const replay = await callTool(client, 'create_social_card', { headline: 'Keep it light', idempotency_key: key });
      expect(replay.run).toMatchObject({ run_id: first.run.run_id, replayed: true, phase: 'done' });
      expect(replay.result.content.some((c) => c.type === 'image')).toBe(false);
      const links = replay.result.content.filter((c) => c.type === 'resource_link');
      expect(links).toHaveLength(1);
      const asset = replay.run.assets[0]!;
      expect(links[0]).toMatchObject({ uri: asset.uri, description: expect.stringContaining(asset.sha256) });
      expect(links[0]).toMatchObject({ description: expect.stringMatching(/resources\/read/) });
      expect(JSON.stringify(replay.result).length).toBeLessThan(JSON.stringify(first.result).length / 4);
      const read = await client.readResource({ uri: asset.uri });
      const bytes = Buffer.from((read.contents[0] as { blob: string }).blob, 'base64');
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(asset.sha256);
    });

    it('inlines the image of a finished run when poll_run asks for it, and not otherwise', async () => {
      const created = await callTool(client, 'create_social_card', {
        headline: 'Ask for it',
        idempotency_key: randomUUID(),
        wait_seconds: 50,
      });
      const plain = await callTool(client, 'poll_run', { run_id: created.run.run_id });
      const asked = await callTool(client, 'poll_run', { run_id: created.run.run_id, inline_image: true });
      expect(plain.result.content.some((c) => c.type === 'image')).toBe(false);
      const image = asked.result.content.find((c) => c.type === 'image');
      expect(image).toMatchObject({ mimeType: 'image/png' });
      const bytes = Buffer.from((image as { data: string }).data, 'base64');
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(asked.run.assets[0]!.sha256);
    });
  });

  describe('run tools', () => {
    it('polls by key and tool, and says not_found for an unknown run', async () => {
      const key = randomUUID();
      const created = await callTool(client, 'create_social_card', { headline: 'Poll me', idempotency_key: key });
      const byKey = await callTool(client, 'poll_run', { idempotency_key: key, tool: 'social_card' });
      expect(byKey.run.run_id).toBe(created.run.run_id);
      const unknown = await callTool(client, 'poll_run', { run_id: 'run_nope' });
      expect(unknown.error?.code).toBe('not_found');
      const neither = await callTool(client, 'poll_run', {});
      expect(neither.error?.code).toBe('validation_failed');
      const badTool = await callTool(client, 'poll_run', { idempotency_key: key, tool: 'video' });
      expect(badTool.error?.details.problems).toEqual([{ field: 'tool', rule: expect.stringMatching(/product_shot/) }]);
    });

    it('cancels once, then says it was already canceled; a canceled run is replayed, never billed', async () => {
      await engine.stop(); // keep the run queued
      const key = randomUUID();
      const created = await callTool(client, 'create_social_card', { headline: 'Stop', idempotency_key: key });
      const first = await callTool(client, 'cancel_run', { run_id: created.run.run_id });
      const second = await callTool(client, 'cancel_run', { run_id: created.run.run_id });
      expect(first.result.structuredContent).toMatchObject({ outcome: 'canceled', phase: 'canceled' });
      expect(second.result.structuredContent).toMatchObject({ outcome: 'already_canceled' });
      const replay = await callTool(client, 'create_social_card', { headline: 'Stop', idempotency_key: key });
      expect(replay.run).toMatchObject({ phase: 'canceled', replayed: true, billed: false });
      expect(replay.run.next).toMatch(/new idempotency_key starts a new run/);
    });

    it('shows a run whose worker stopped as still live, with its attempts and why it waits', async () => {
      await engine.stop(); // only the worker below takes the run
      const shortLeases = await open({ leaseMs: 300 });
      const short = await connect('local', shortLeases);
      try {
        const created = await callTool(short, 'create_social_card', {
          headline: 'Waiting',
          idempotency_key: randomUUID(),
        });
        expect(created.run).toMatchObject({ attempts: 0, stalls: 0, waiting: null });
        await shortLeases.claim('a-worker-that-dies');
        const polled = await until(async () => {
          const answer = await callTool(short, 'poll_run', { run_id: created.run.run_id });
          return answer.run.waiting === null ? undefined : answer;
        }, 'the lease to run out');
        expect(polled.run).toMatchObject({ phase: 'queued', attempts: 1, stalls: 0, billed: false });
        expect(polled.run.waiting).toMatch(/last worker stopped before finishing \(attempt 1\)/);
        const text = polled.result.content[0]?.type === 'text' ? polled.result.content[0].text : '';
        expect(text).toContain(polled.run.waiting);
      } finally {
        await short.close();
        await shortLeases.close();
      }
    });

    it('says so when canceling a finished run', async () => {
      const created = await callTool(client, 'create_social_card', {
        headline: 'Fin',
        idempotency_key: randomUUID(),
        wait_seconds: 50,
      });
      expect(created.run.phase).toBe('done');
      const cancel = await callTool(client, 'cancel_run', { run_id: created.run.run_id });
      expect(cancel.result.structuredContent).toMatchObject({ outcome: 'already_finished', phase: 'done' });
    });

    it('deletes a run and its images, and a late retry gets not_found', async () => {
      const key = randomUUID();
      const created = await callTool(client, 'create_social_card', {
        headline: 'Gone',
        idempotency_key: key,
        wait_seconds: 50,
      });
      const deleted = await callTool(client, 'delete_run', { run_id: created.run.run_id });
      expect(deleted.result.structuredContent).toMatchObject({ deleted: true });
      const late = await callTool(client, 'create_social_card', { headline: 'Gone', idempotency_key: key });
      expect(late.error).toMatchObject({ code: 'not_found', details: { run_id: created.run.run_id, deleted: true } });
      await expect(client.readResource({ uri: created.run.assets[0]!.uri })).rejects.toThrow(/not found/);
    });

    it('lists runs newest first with a cursor, and reports usage', async () => {
      for (let i = 0; i < 3; i++)
        await callTool(client, 'create_social_card', { headline: `Card ${i}`, idempotency_key: randomUUID() });
      const page = await callTool(client, 'list_runs', { limit: 2 });
      const data = page.result.structuredContent as { runs: { run_id: string }[]; next_cursor: string };
      expect(data.runs).toHaveLength(2);
      const rest = await callTool(client, 'list_runs', { limit: 2, cursor: data.next_cursor });
      expect((rest.result.structuredContent as { runs: unknown[] }).runs).toHaveLength(1);
      const usage = await callTool(client, 'get_usage', {});
      expect(usage.result.structuredContent).toMatchObject({ runs: 3, by_tool: { social_card: { runs: 3 } } });
    });

    it('keeps tenants apart: another tenant cannot see, poll or cancel a run', async () => {
      const created = await callTool(client, 'create_social_card', { headline: 'Mine', idempotency_key: randomUUID() });
      const other = await connect('globex');
      try {
        expect((await callTool(other, 'poll_run', { run_id: created.run.run_id })).error?.code).toBe('not_found');
        expect((await callTool(other, 'cancel_run', { run_id: created.run.run_id })).error?.code).toBe('not_found');
        expect((await callTool(other, 'list_runs', {})).result.structuredContent).toMatchObject({ runs: [] });
        await expect(other.readResource({ uri: `runs://${created.run.run_id}` })).rejects.toThrow(/not found/);
      } finally {
        await other.close();
      }
    });
  });

  describe('resources', () => {
    it('serves a run as JSON and its images as PNG blobs, with templates listed', async () => {
      const done = await callTool(client, 'create_social_card', {
        headline: 'Read me',
        idempotency_key: randomUUID(),
        wait_seconds: 50,
      });
      const { resourceTemplates } = await client.listResourceTemplates();
      expect(resourceTemplates.map((t) => t.uriTemplate)).toEqual(['runs://{run_id}', 'runs://{run_id}/assets/{n}']);
      const run = await client.readResource({ uri: `runs://${done.run.run_id}` });
      const text = run.contents[0] && 'text' in run.contents[0] ? run.contents[0].text : '';
      expect(JSON.parse(text)).toMatchObject({ run_id: done.run.run_id, phase: 'done' });
      const listed = await client.listResources();
      expect(listed.resources.map((r) => r.uri)).toContain(`runs://${done.run.run_id}`);
      await expect(client.readResource({ uri: 'https://example.invalid/x' })).rejects.toThrow(/runs:\/\/\{run_id\}/);
    });
  });
});

describe('storage failures at the MCP boundary', () => {
  it('answers a busy ledger with a storage_unavailable result that says the same key is safe to retry', async () => {
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const Database = (await import('better-sqlite3')).default;
    const path = join(mkdtempSync(join(tmpdir(), 'runledger-busy-')), 'ledger.db');
    const busyLedger = await openSqliteLedger({ path, busyTimeoutMs: 50 });
    const busyClient = await connect('local', busyLedger);
    const holder = new Database(path);
    try {
      holder.exec('BEGIN IMMEDIATE');
      const key = randomUUID();
      const answer = await callTool(busyClient, 'create_social_card', { headline: 'Busy', idempotency_key: key });
      expect(answer.result.isError).toBe(true);
      expect(answer.error).toMatchObject({ code: 'storage_unavailable', details: { cause: 'SQLITE_BUSY' } });
      const text = answer.result.content[0]?.type === 'text' ? answer.result.content[0].text : '';
      expect(text).toMatch(/retry the same call with the same idempotency_key/);
      holder.exec('ROLLBACK');
      const retried = await callTool(busyClient, 'create_social_card', { headline: 'Busy', idempotency_key: key });
      expect(retried.run).toMatchObject({ replayed: false, phase: 'queued' });
    } finally {
      holder.close();
      await busyClient.close();
      await busyLedger.close();
    }
  });
});
