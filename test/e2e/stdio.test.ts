// End to end over real stdio: the built CLI spawned by the SDK's Client, as Claude Desktop would.
import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import {
  callTool,
  CLI,
  PRODUCT_SHOT,
  readLedger,
  startStdio,
  tempDb,
  until,
  type StdioServer,
} from '../helpers/mcp.js';

const servers: StdioServer[] = [];
async function start(db: string, flags: string[] = []): Promise<StdioServer> {
  const server = await startStdio(db, flags);
  servers.push(server);
  return server;
}
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close().catch(() => undefined)));
});

const usageOf = (db: string) => readLedger(db, (ledger) => ledger.usage('local'));

describe('MCP over stdio', () => {
  it('answers an abandoned create on retry with the same run, replayed, and charges once', async () => {
    const db = tempDb();
    const { client } = await start(db, ['--phase-delay-ms', '300']);
    const key = randomUUID();
    const abandon = new AbortController();
    let seenRunId: string | undefined;
    const abandoned = callTool(
      client,
      'create_product_shot',
      { ...PRODUCT_SHOT, idempotency_key: key, wait_seconds: 30 },
      {
        signal: abandon.signal,
        onprogress: (p) => {
          // The first progress notification comes once the run is committed: the client gives up here.
          seenRunId = /\((run_[^)]+)\)/.exec(p.message ?? '')?.[1];
          abandon.abort();
        },
      },
    );
    await expect(abandoned).rejects.toThrow();
    expect(seenRunId).toMatch(/^run_/);

    const retry = await callTool(client, 'create_product_shot', { ...PRODUCT_SHOT, idempotency_key: key });
    expect(retry.run.run_id).toBe(seenRunId);
    expect(retry.run.replayed).toBe(true);
    const done = await callTool(client, 'poll_run', { run_id: seenRunId, wait_seconds: 50 });
    expect(done.run.phase).toBe('done');
    const usage = await callTool(client, 'get_usage', {});
    expect(usage.result.structuredContent).toMatchObject({ runs: 1, charges: 1, credits: 8 });
  });

  it('refuses the same key with a different payload, naming the original run, and creates nothing', async () => {
    const db = tempDb();
    const { client } = await start(db);
    const key = randomUUID();
    const first = await callTool(client, 'create_product_shot', { ...PRODUCT_SHOT, idempotency_key: key });
    const other = await callTool(client, 'create_product_shot', { ...PRODUCT_SHOT, variants: 1, idempotency_key: key });
    expect(other.result.isError).toBe(true);
    expect(other.error).toMatchObject({
      code: 'idempotency_key_reused',
      details: { run_id: first.run.run_id, differing_fields: ['variants'] },
    });
    const text = other.result.content[0]?.type === 'text' ? other.result.content[0].text : '';
    expect(text).toContain(first.run.run_id);
    expect(text).toMatch(/new idempotency_key/);
    const list = await callTool(client, 'list_runs', {});
    expect((list.result.structuredContent as { runs: unknown[] }).runs).toHaveLength(1);
  });

  it('makes one run from 50 concurrent identical creates', async () => {
    const db = tempDb();
    const { client } = await start(db);
    const key = randomUUID();
    const answers = await Promise.all(
      Array.from({ length: 50 }, () =>
        callTool(client, 'create_product_shot', { ...PRODUCT_SHOT, idempotency_key: key }),
      ),
    );
    expect(answers.every((a) => a.result.isError !== true)).toBe(true);
    expect(new Set(answers.map((a) => a.run.run_id)).size).toBe(1);
    expect(answers.filter((a) => !a.run.replayed)).toHaveLength(1);
    const done = await callTool(client, 'poll_run', { idempotency_key: key, tool: 'product_shot', wait_seconds: 50 });
    expect(done.run.phase).toBe('done');
    // Asked through the server: its replay counts are batched, and get_usage writes them first.
    const usage = await callTool(client, 'get_usage', {});
    expect(usage.result.structuredContent).toMatchObject({ runs: 1, charges: 1, replays_absorbed: 49 });
  });

  it('streams the phases in order with rising timestamps, and the assets read back with matching SHA-256', async () => {
    const db = tempDb();
    const { client } = await start(db, ['--phase-delay-ms', '100']);
    const progress: number[] = [];
    // The SDK's client runs progress handlers a microtask late: a last notification read in the same
    // chunk as the result finds its handler already gone, and reaches onerror instead. It was sent.
    client.onerror = (err) => {
      const dropped = /progress notification for an unknown token: (.*)$/s.exec(err.message)?.[1];
      if (dropped !== undefined)
        progress.push((JSON.parse(dropped) as { params: { progress: number } }).params.progress);
    };
    const done = await callTool(
      client,
      'create_product_shot',
      { ...PRODUCT_SHOT, idempotency_key: randomUUID(), wait_seconds: 50 },
      { onprogress: (p) => progress.push(p.progress) },
    );
    expect(done.run.phase).toBe('done');
    expect(done.run.phases.map((p) => p.phase)).toEqual(['queued', 'composing', 'rendering', 'done']);
    const times = done.run.phases.map((p) => Date.parse(p.at));
    for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThanOrEqual(times[i - 1]!);
    expect(progress.length).toBeGreaterThanOrEqual(3);
    expect([...progress].sort((a, b) => a - b)).toEqual(progress);
    expect(progress.at(-1)).toBe(1);

    expect(done.run.assets).toHaveLength(2);
    for (const asset of done.run.assets) {
      const read = await client.readResource({ uri: asset.uri });
      const content = read.contents[0]!;
      expect(content.mimeType).toBe('image/png');
      const bytes = Buffer.from('blob' in content ? content.blob : '', 'base64');
      expect(bytes.subarray(1, 4).toString()).toBe('PNG');
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(asset.sha256);
    }
    const links = done.result.content.filter((c) => c.type === 'resource_link');
    expect(links.map((l) => (l.type === 'resource_link' ? l.uri : ''))).toEqual(done.run.assets.map((a) => a.uri));
    expect(done.run.evaluation).toMatchObject({ score: expect.any(Number), tested: expect.any(Number) });
  });

  it('resumes a run after SIGKILL in the middle of rendering and bills it once', async () => {
    const db = tempDb();
    const flags = ['--phase-delay-ms', '1500', '--lease-ms', '2000'];
    const first = await start(db, flags);
    const key = randomUUID();
    const created = await callTool(first.client, 'create_product_shot', { ...PRODUCT_SHOT, idempotency_key: key });
    await until(async () => {
      const polled = await callTool(first.client, 'poll_run', { run_id: created.run.run_id });
      return polled.run.phase === 'rendering' ? polled : undefined;
    }, 'the run to reach rendering');
    process.kill(first.pid, 'SIGKILL');

    const second = await start(db, flags);
    const found = await callTool(second.client, 'poll_run', { idempotency_key: key, tool: 'create_product_shot' });
    expect(found.run.run_id).toBe(created.run.run_id);
    const done = await until(
      async () => {
        const polled = await callTool(second.client, 'poll_run', { run_id: created.run.run_id, wait_seconds: 50 });
        return polled.run.phase === 'done' ? polled : undefined;
      },
      'the resumed run to finish',
      120_000,
    );
    expect(done.run.attempts).toBeGreaterThanOrEqual(2);
    expect(done.run.phases.map((p) => p.phase)).toEqual(['queued', 'composing', 'rendering', 'done']);
    expect(await usageOf(db)).toMatchObject({ runs: 1, charges: 1, credits: 8 });
  });

  it('writes nothing but JSON-RPC messages to stdout', async () => {
    const db = tempDb();
    const child = spawn(process.execPath, [CLI, '--db', db, '--log-level', 'debug'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const lines: string[] = [];
    const stdout = createInterface({ input: child.stdout });
    stdout.on('line', (line) => lines.push(line));
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const send = (message: object) => child.stdin.write(JSON.stringify(message) + '\n');
    const answered = (id: number) => until(async () => lines.find((l) => l.includes(`"id":${id}`)), `response ${id}`);

    send({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    });
    await answered(1);
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    send({ jsonrpc: '2.0', id: 2, method: 'tools/list' });
    const key = randomUUID();
    send({
      jsonrpc: '2.0',
      id: 3,
      method: 'tools/call',
      params: {
        name: 'create_social_card',
        arguments: { headline: 'Hello', idempotency_key: key, wait_seconds: 50 },
        _meta: { progressToken: 'p1' },
      },
    });
    send({
      jsonrpc: '2.0',
      id: 4,
      method: 'tools/call',
      params: { name: 'create_social_card', arguments: { headline: 'Hello', idempotency_key: 'short' } },
    });
    await answered(2);
    await answered(3);
    await answered(4);
    child.stdin.end();
    await new Promise((resolve) => child.once('exit', resolve));

    expect(stderr).toMatch(/run created/); // the logs went somewhere: to stderr
    expect(lines.length).toBeGreaterThanOrEqual(5);
    for (const line of lines) {
      const message = JSON.parse(line) as { jsonrpc?: string };
      expect(message.jsonrpc).toBe('2.0');
    }
    expect(lines.some((l) => l.includes('notifications/progress'))).toBe(true);
  });

  it('answers a batch with -32600 and a line that is not JSON with -32700, creates nothing, and goes on serving', async () => {
    const db = tempDb();
    const child = spawn(process.execPath, [CLI, '--db', db, '--concurrency', '0'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const lines: string[] = [];
    createInterface({ input: child.stdout }).on('line', (line) => lines.push(line));
    const send = (text: string) => child.stdin.write(`${text}\n`);
    const answers = (n: number) =>
      until(async () => (lines.length >= n ? lines.map((l) => JSON.parse(l)) : undefined), `${n} answers`);
    send(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
      }),
    );
    await answers(1);
    send(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }));
    const create = (id: number) => ({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: { name: 'create_social_card', arguments: { headline: 'Hello', idempotency_key: randomUUID() } },
    });
    send(JSON.stringify([create(2), create(3)]));
    send('{"jsonrpc": "2.0", "id": 4, "method": "tools/list"');
    send(JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/list' }));
    const [, batch, notJson, listed] = await answers(4);
    expect(batch).toEqual({
      jsonrpc: '2.0',
      id: null,
      error: { code: -32600, message: expect.stringMatching(/batches are not supported/) },
    });
    expect(notJson).toEqual({
      jsonrpc: '2.0',
      id: null,
      error: { code: -32700, message: expect.stringMatching(/not JSON/) },
    });
    expect(listed.id).toBe(5);
    child.stdin.end();
    await new Promise((resolve) => child.once('exit', resolve));
    expect(await readLedger(db, (ledger) => ledger.listRuns('local'))).toMatchObject({ runs: [] });
  });
});
