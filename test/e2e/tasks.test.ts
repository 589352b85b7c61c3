// MCP tasks over real processes with the SDK's client: a create tool called as a task answers with
// the run as its task, and the task lives in the ledger — across restarts, sessions and replicas,
// bound to its tenant.
import { randomUUID } from 'node:crypto';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  CallToolResultSchema,
  CreateTaskResultSchema,
  McpError,
  type CallToolResult,
  type Task,
} from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { connectHttp, killAll, startHttp } from '../helpers/http.js';
import { backends, freshSchema, PG_URL } from '../helpers/ledgers.js';
import { callTool, PRODUCT_SHOT, startStdio, tempDb, until, type StdioServer } from '../helpers/mcp.js';

const servers: StdioServer[] = [];
const clients: Client[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await Promise.all(servers.splice(0).map((s) => s.close().catch(() => undefined)));
  await killAll();
});

async function start(db: string, flags: string[] = []): Promise<StdioServer> {
  const server = await startStdio(db, ['--lease-ms', '1000', ...flags]);
  servers.push(server);
  return server;
}

/** A create_product_shot call made as a task: the CreateTaskResult. */
async function createAsTask(client: Client, key: string, ttl?: number) {
  return client.request(
    {
      method: 'tools/call',
      params: {
        name: 'create_product_shot',
        arguments: { ...PRODUCT_SHOT, idempotency_key: key },
        task: ttl === undefined ? {} : { ttl },
      },
    },
    CreateTaskResultSchema,
  );
}

const getTask = (client: Client, taskId: string) => client.experimental.tasks.getTask(taskId);
const taskResult = (client: Client, taskId: string) =>
  client.experimental.tasks.getTaskResult(taskId, CallToolResultSchema) as Promise<CallToolResult>;

describe('MCP tasks', () => {
  it('runs a create as a task: the task is the run, followed through its phases, and its result is what poll_run gives', async () => {
    const { client } = await start(tempDb(), ['--phase-delay-ms', '300']);
    const tools = (await client.listTools()).tools;
    expect(tools.find((t) => t.name === 'create_product_shot')?.execution).toEqual({ taskSupport: 'optional' });
    expect(client.getServerCapabilities()?.tasks).toMatchObject({
      list: {},
      cancel: {},
      requests: { tools: { call: {} } },
    });

    const key = randomUUID();
    const created = await createAsTask(client, key, 60_000);
    expect(created.task).toMatchObject({
      taskId: expect.stringMatching(/^run_/),
      status: 'working',
      pollInterval: 1000,
      ttl: 7 * 24 * 3600 * 1000,
    });
    // The same key in a second task-augmented call answers the same task.
    expect((await createAsTask(client, key)).task.taskId).toBe(created.task.taskId);

    const seen = new Set<string>();
    const finished = await until(async () => {
      const task = await getTask(client, created.task.taskId);
      seen.add(task.statusMessage!.split(',')[0]!);
      return task.status === 'working' ? undefined : task;
    }, 'the task to end');
    expect(finished.status).toBe('completed');
    expect([...seen].some((message) => /^(composing|rendering)$/.test(message))).toBe(true);

    const result = await taskResult(client, created.task.taskId);
    expect(result._meta?.['io.modelcontextprotocol/related-task']).toEqual({ taskId: created.task.taskId });
    const polled = await callTool(client, 'poll_run', { run_id: created.task.taskId });
    expect(result.structuredContent).toEqual(polled.result.structuredContent);
    expect(result.isError).toBeUndefined();
  });

  it('blocks tasks/result until a failing run ends, and answers with the failure the call would have given', async () => {
    // Every render thread dies on this scene: the run fails at the bound, not billed.
    const server = await startStdio(tempDb(), ['--lease-ms', '1000'], {
      env: { RUNLEDGER_FAILPOINTS: 'render-thread' },
    });
    servers.push(server);
    const created = await createAsTask(server.client, randomUUID());
    const result = await taskResult(server.client, created.task.taskId);
    expect(result.isError).toBe(true);
    expect(result.structuredContent).toMatchObject({
      run_id: created.task.taskId,
      phase: 'failed',
      billed: false,
      error: { code: 'generation_failed' },
    });
    const task = await getTask(server.client, created.task.taskId);
    expect(task).toMatchObject({ status: 'failed', statusMessage: expect.stringMatching(/^Failed, not billed: /) });
    expect(task).not.toHaveProperty('pollInterval');
  });

  it('keeps a task through a SIGKILL and a restart on the same ledger, and finishes it', async () => {
    const db = tempDb();
    const first = await start(db, ['--phase-delay-ms', '1500']);
    const created = await createAsTask(first.client, randomUUID());
    await until(
      async () =>
        (await getTask(first.client, created.task.taskId)).statusMessage?.startsWith('composing') ? true : undefined,
      'composing',
    );
    process.kill(first.pid, 'SIGKILL');
    const second = await start(db, ['--phase-delay-ms', '100']);
    expect((await getTask(second.client, created.task.taskId)).status).toBe('working');
    const result = await taskResult(second.client, created.task.taskId);
    expect(result.structuredContent).toMatchObject({ run_id: created.task.taskId, phase: 'done', billed: true });
    expect((await getTask(second.client, created.task.taskId)).status).toBe('completed');
  });

  it('binds tasks to the tenant: another tenant gets not found and lists only its own', async () => {
    const db = tempDb();
    const acme = await startStdio(db, ['--tenant', 'acme', '--concurrency', '0']);
    const globex = await startStdio(db, ['--tenant', 'globex', '--concurrency', '0']);
    servers.push(acme, globex);
    const created = await createAsTask(acme.client, randomUUID());
    const mine = await createAsTask(globex.client, randomUUID());
    const lookup = await getTask(globex.client, created.task.taskId).catch((e: unknown) => e);
    expect(lookup).toBeInstanceOf(McpError);
    expect(lookup).toMatchObject({ code: -32602, message: expect.stringContaining('was not found') });
    await expect(globex.client.experimental.tasks.cancelTask(created.task.taskId)).rejects.toMatchObject({
      code: -32602,
    });
    const listed = (await globex.client.experimental.tasks.listTasks()).tasks.map((t: Task) => t.taskId);
    expect(listed).toEqual([mine.task.taskId]);
    expect((await getTask(acme.client, created.task.taskId)).status).toBe('working');
  });

  it('cancels a task, and refuses to cancel one that has ended', async () => {
    const { client } = await start(tempDb(), ['--concurrency', '0']);
    const created = await createAsTask(client, randomUUID());
    const cancelled = await client.experimental.tasks.cancelTask(created.task.taskId);
    expect(cancelled).toMatchObject({ taskId: created.task.taskId, status: 'cancelled' });
    await expect(client.experimental.tasks.cancelTask(created.task.taskId)).rejects.toMatchObject({
      code: -32602,
      message: expect.stringContaining('already ended'),
    });
    expect((await taskResult(client, created.task.taskId)).structuredContent).toMatchObject({
      phase: 'canceled',
      billed: false,
    });
  });

  it('answers a task-augmented call that cannot start with a JSON-RPC error naming the problem, and creates nothing', async () => {
    const { client } = await start(tempDb(), ['--concurrency', '0']);
    const bad = await client
      .request(
        {
          method: 'tools/call',
          params: { name: 'create_product_shot', arguments: { ...PRODUCT_SHOT, idempotency_key: 'short' }, task: {} },
        },
        CreateTaskResultSchema,
      )
      .catch((e: unknown) => e);
    expect(bad).toMatchObject({ code: -32602, data: { code: 'validation_failed' } });
    const notATask = await client
      .request(
        { method: 'tools/call', params: { name: 'poll_run', arguments: { run_id: 'run_x' }, task: {} } },
        CreateTaskResultSchema,
      )
      .catch((e: unknown) => e);
    expect(notATask).toMatchObject({ code: -32601 });
    expect((await client.experimental.tasks.listTasks()).tasks).toEqual([]);
  });

  it('answers a client that does not use tasks exactly as before', async () => {
    const { client } = await start(tempDb(), ['--concurrency', '0']);
    const answer = await callTool(client, 'create_product_shot', { ...PRODUCT_SHOT, idempotency_key: randomUUID() });
    expect(answer.run).toMatchObject({ run_id: expect.stringMatching(/^run_/), phase: 'queued', replayed: false });
    expect(answer.result).not.toHaveProperty('task');
  });
});

describe.runIf(backends.some((b) => b.name === 'PostgreSQL'))('MCP tasks on PostgreSQL replicas', () => {
  it('creates a task through one replica and gets, lists and cancels it through another', async () => {
    const db = `${PG_URL}?schema=${freshSchema()}`;
    const [a, b] = await Promise.all([startHttp(db, ['--concurrency', '0']), startHttp(db, ['--concurrency', '0'])]);
    const [viaA, viaB] = [await connectHttp(a.url), await connectHttp(b.url)];
    clients.push(viaA, viaB);
    const created = await createAsTask(viaA, randomUUID());
    expect((await getTask(viaB, created.task.taskId)).status).toBe('working');
    expect((await viaB.experimental.tasks.listTasks()).tasks.map((t: Task) => t.taskId)).toContain(created.task.taskId);
    expect((await viaB.experimental.tasks.cancelTask(created.task.taskId)).status).toBe('cancelled');
    expect((await getTask(viaA, created.task.taskId)).status).toBe('cancelled');
  });
});
