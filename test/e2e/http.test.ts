// End to end over real HTTP on loopback: the built CLI with --http, the SDK's StreamableHTTPClientTransport.
import { randomUUID } from 'node:crypto';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import { openSqliteLedger } from '../../src/ledger/sqlite/store.js';
import { connectHttp, killAll, readSse, startHttp, type SseEvent } from '../helpers/http.js';
import { callTool, PRODUCT_SHOT, readLedger, tempDb, until } from '../helpers/mcp.js';

const TOKENS = 'acme:acme-token-0123456789abcdef,globex:globex-token-0123456789abcdef';
const ACME = 'acme-token-0123456789abcdef';
const GLOBEX = 'globex-token-0123456789abcdef';

const clients: Client[] = [];
async function connect(url: string, token?: string): Promise<Client> {
  const client = await connectHttp(url, token);
  clients.push(client);
  return client;
}
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await killAll();
});

const listRuns = (db: string) => readLedger(db, async (ledger) => (await ledger.listRuns('local')).runs);
const usageOf = (db: string, tenant: string) => readLedger(db, (ledger) => ledger.usage(tenant));

const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};
const MCP_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

/** Opens a session by hand; returns its id. */
async function rawSession(url: string, headers: Record<string, string> = {}): Promise<string> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { ...MCP_HEADERS, ...headers },
    body: JSON.stringify(INIT),
  });
  expect(response.status).toBe(200);
  const sessionId = response.headers.get('mcp-session-id')!;
  await response.body?.cancel();
  const initialized = await fetch(url, {
    method: 'POST',
    headers: { ...MCP_HEADERS, ...headers, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' },
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  });
  expect(initialized.status).toBe(202);
  return sessionId;
}

describe('Streamable HTTP', () => {
  it('makes one run and one charge from 200 concurrent creates over 20 sessions on 4 processes', async () => {
    const db = tempDb();
    await (await openSqliteLedger({ path: db })).close();
    const servers = await Promise.all(Array.from({ length: 4 }, () => startHttp(db, ['--concurrency', '1'])));
    const sessions = await Promise.all(Array.from({ length: 20 }, (_, i) => connect(servers[i % 4]!.url)));
    const key = randomUUID();
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        callTool(sessions[i % 20]!, 'create_product_shot', { ...PRODUCT_SHOT, idempotency_key: key }),
      ),
    );
    expect(answers.filter((a) => a.result.isError === true)).toEqual([]);
    expect(new Set(answers.map((a) => a.run.run_id)).size).toBe(1);
    expect(answers.filter((a) => !a.run.replayed)).toHaveLength(1);
    const done = await callTool(sessions[3]!, 'poll_run', {
      idempotency_key: key,
      tool: 'product_shot',
      wait_seconds: 50,
    });
    expect(done.run.phase).toBe('done');
    expect(await usageOf(db, 'local')).toMatchObject({ runs: 1, charges: 1 });
  });

  it('keeps tenants apart by token, and the same key in two tenants gives two runs', async () => {
    const db = tempDb();
    const server = await startHttp(db, [], { RUNLEDGER_TOKENS: TOKENS });
    const acme = await connect(server.url, ACME);
    const globex = await connect(server.url, GLOBEX);
    const key = randomUUID();
    const mine = await callTool(acme, 'create_social_card', {
      headline: 'Acme',
      idempotency_key: key,
      wait_seconds: 50,
    });
    const theirs = await callTool(globex, 'create_social_card', { headline: 'Acme', idempotency_key: key });
    expect(mine.run.run_id).not.toBe(theirs.run.run_id);
    expect(theirs.run.replayed).toBe(false);
    const runId = mine.run.run_id;
    expect((await callTool(globex, 'poll_run', { run_id: runId })).error?.code).toBe('not_found');
    expect((await callTool(globex, 'cancel_run', { run_id: runId })).error?.code).toBe('not_found');
    expect((await callTool(globex, 'delete_run', { run_id: runId })).error?.code).toBe('not_found');
    const listed = (await callTool(globex, 'list_runs', {})).result.structuredContent as { runs: { run_id: string }[] };
    expect(listed.runs.map((r) => r.run_id)).toEqual([theirs.run.run_id]);
    await expect(globex.readResource({ uri: mine.run.assets[0]!.uri })).rejects.toThrow(/not found/);
    expect((await callTool(acme, 'poll_run', { run_id: runId })).run.phase).toBe('done');
  });

  it('answers a missing or wrong token with 401 and a WWW-Authenticate challenge', async () => {
    const server = await startHttp(tempDb(), [], { RUNLEDGER_TOKENS: TOKENS });
    const missing = await fetch(server.url, { method: 'POST', headers: MCP_HEADERS, body: JSON.stringify(INIT) });
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toMatch(/^Bearer realm="runledger"/);
    expect(await missing.json()).toMatchObject({ error: { data: { code: 'unauthorized' } } });
    const wrong = await fetch(server.url, {
      method: 'POST',
      headers: { ...MCP_HEADERS, authorization: 'Bearer not-the-token-at-all-000' },
      body: JSON.stringify(INIT),
    });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toContain('invalid_token');
    await expect(connectHttp(server.url, 'nope-nope-nope-nope-nope')).rejects.toThrow();
  });

  it('refuses a foreign Host or Origin, an oversized body and malformed JSON, and stays up', async () => {
    const server = await startHttp(tempDb(), ['--max-body-bytes', '4096']);
    const post = (headers: Record<string, string>, body: string) =>
      fetch(server.url, { method: 'POST', headers: { ...MCP_HEADERS, ...headers }, body });
    // fetch will not forge Host, so the check is made with a raw request through node:http.
    const { request } = await import('node:http');
    const hostStatus = await new Promise<number>((resolve, reject) => {
      const req = request(
        server.url,
        { method: 'POST', headers: { ...MCP_HEADERS, host: 'evil.example:80' } },
        (res) => {
          res.resume();
          resolve(res.statusCode!);
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify(INIT));
    });
    expect(hostStatus).toBe(403);
    expect((await post({ origin: 'https://evil.example' }, JSON.stringify(INIT))).status).toBe(403);
    expect((await post({ origin: server.origin.replace('127.0.0.1', 'localhost') }, JSON.stringify(INIT))).status).toBe(
      200,
    );
    const big = await post({}, JSON.stringify({ ...INIT, params: { ...INIT.params, pad: 'x'.repeat(10_000) } }));
    expect(big.status).toBe(413);
    const malformed = await post({}, '{"jsonrpc": "2.0", "id": 1, "method": ');
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ jsonrpc: '2.0', error: { code: -32700 } });
    const health = await fetch(`${server.origin}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok', ledger: 'reachable' });
  });

  it('answers a 12 MiB body with 413, twenty times in a row, each time before the client gives up', async () => {
    const server = await startHttp(tempDb());
    const body = JSON.stringify({ ...INIT, params: { ...INIT.params, pad: 'x'.repeat(12 * 1024 * 1024) } });
    for (let i = 0; i < 20; i++) {
      const answer = await fetch(server.url, { method: 'POST', headers: MCP_HEADERS, body });
      expect(answer.status).toBe(413);
      expect(await answer.json()).toMatchObject({ error: { message: expect.stringMatching(/too large/) } });
    }
    expect((await fetch(`${server.origin}/healthz`)).status).toBe(200);
  });

  it('answers 400 without a session id, 404 for an unknown one, and ends a session on DELETE', async () => {
    const server = await startHttp(tempDb());
    const list = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' });
    expect((await fetch(server.url, { method: 'POST', headers: MCP_HEADERS, body: list })).status).toBe(400);
    const unknown = await fetch(server.url, {
      method: 'POST',
      headers: { ...MCP_HEADERS, 'mcp-session-id': randomUUID() },
      body: list,
    });
    expect(unknown.status).toBe(404);
    const sessionId = await rawSession(server.url);
    const headers = { ...MCP_HEADERS, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' };
    const ok = await fetch(server.url, { method: 'POST', headers, body: list });
    expect(ok.status).toBe(200);
    await ok.body?.cancel();
    expect((await fetch(server.url, { method: 'DELETE', headers })).status).toBe(200);
    expect((await fetch(server.url, { method: 'POST', headers, body: list })).status).toBe(404);
  });

  it('serves a stateless replica: no session needed, still one run per key', async () => {
    const server = await startHttp(tempDb(), ['--stateless']);
    const client = await connect(server.url);
    const key = randomUUID();
    const a = await callTool(client, 'create_social_card', { headline: 'Stateless', idempotency_key: key });
    const b = await callTool(client, 'create_social_card', { headline: 'Stateless', idempotency_key: key });
    expect(b.run).toMatchObject({ run_id: a.run.run_id, replayed: true });
  });

  it('finishes a run on another process after the rendering one is SIGKILLed, billed once', async () => {
    const db = tempDb();
    const flags = ['--phase-delay-ms', '1500', '--lease-ms', '2000', '--concurrency', '1'];
    const first = await startHttp(db, flags);
    const firstClient = await connect(first.url);
    const created = await callTool(firstClient, 'create_product_shot', {
      ...PRODUCT_SHOT,
      idempotency_key: randomUUID(),
    });
    await until(async () => {
      const polled = await callTool(firstClient, 'poll_run', { run_id: created.run.run_id });
      return polled.run.phase === 'rendering' ? true : undefined;
    }, 'the run to reach rendering');
    const second = await startHttp(db, flags);
    first.child.kill('SIGKILL');
    await first.exited;
    const secondClient = await connect(second.url);
    const done = await until(
      async () => {
        const polled = await callTool(secondClient, 'poll_run', { run_id: created.run.run_id, wait_seconds: 50 });
        return polled.run.phase === 'done' ? polled : undefined;
      },
      'the other process to finish the run',
      120_000,
    );
    expect(done.run.attempts).toBeGreaterThanOrEqual(2);
    expect(await usageOf(db, 'local')).toMatchObject({ runs: 1, charges: 1 });
  });

  it('replays missed events on reconnect with Last-Event-ID, also after the server restarts', async () => {
    const db = tempDb();
    const flags = ['--phase-delay-ms', '400'];
    const server = await startHttp(db, flags);
    const sessionId = await rawSession(server.url);
    const headers = { ...MCP_HEADERS, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-11-25' };
    const call = {
      jsonrpc: '2.0',
      id: 7,
      method: 'tools/call',
      params: {
        name: 'create_product_shot',
        arguments: { ...PRODUCT_SHOT, idempotency_key: randomUUID(), wait_seconds: 50 },
        _meta: { progressToken: 'resume-me' },
      },
    };
    const response = await fetch(server.url, { method: 'POST', headers, body: JSON.stringify(call) });
    const seen: SseEvent[] = [];
    // Disconnect after the first progress notification.
    await readSse(response, (event) => {
      seen.push(event);
      return event.data.includes('notifications/progress');
    });
    const lastId = seen.filter((e) => e.id !== undefined).at(-1)!.id!;
    const runId = /"message":"[a-z]+ \((run_[^)]+)\)"/.exec(seen.at(-1)!.data)![1]!;

    // Wait, outside the stream, for the run to finish: everything after lastId was missed.
    await readLedger(db, (ledger) =>
      until(
        async () => ((await ledger.getRun('local', runId)).phase === 'done' ? true : undefined),
        'the run to finish',
      ),
    );

    const resume = async (origin: string) => {
      const replayed: SseEvent[] = [];
      const again = await fetch(`${origin}/mcp`, {
        method: 'GET',
        headers: {
          accept: 'text/event-stream',
          'mcp-session-id': sessionId,
          'mcp-protocol-version': '2025-11-25',
          'last-event-id': lastId,
        },
      });
      expect(again.status).toBe(200);
      await readSse(again, (event) => {
        if (event.data !== '') replayed.push(event);
        return event.data.includes('"id":7');
      });
      return replayed.map(
        (e) => JSON.parse(e.data) as { method?: string; id?: number; params?: { progress: number }; result?: unknown },
      );
    };

    const live = await resume(server.origin);
    expect(live.at(-1)).toMatchObject({ id: 7, result: { structuredContent: { run_id: runId, phase: 'done' } } });
    const progress = live.filter((m) => m.method === 'notifications/progress').map((m) => m.params!.progress);
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.at(-1)).toBe(1);

    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    const restarted = await startHttp(db, flags);
    const afterRestart = await resume(restarted.origin);
    expect(afterRestart).toEqual(live);
  });

  it('finishes an in-flight request before exiting on SIGTERM', async () => {
    const db = tempDb();
    const server = await startHttp(db, ['--phase-delay-ms', '300']);
    const client = await connect(server.url);
    const pending = callTool(client, 'create_social_card', {
      headline: 'Finish me',
      idempotency_key: randomUUID(),
      wait_seconds: 50,
    });
    await until(async () => ((await listRuns(db)).length === 1 ? true : undefined), 'the run to be created');
    server.child.kill('SIGTERM');
    const answer = await pending;
    expect(answer.result.isError).not.toBe(true);
    expect(answer.run.phase).toBe('done');
    expect(await server.exited).toBe(0);
  });

  it('gives back the lease of a run in progress on SIGTERM, so another process resumes it at once', async () => {
    const db = tempDb();
    const server = await startHttp(db, ['--phase-delay-ms', '60000', '--lease-ms', '600000']);
    const client = await connect(server.url);
    const created = await callTool(client, 'create_social_card', {
      headline: 'Hand over',
      idempotency_key: randomUUID(),
    });
    await until(
      async () => ((await listRuns(db))[0]?.phase === 'composing' ? true : undefined),
      'a worker to take the run',
    );
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    // The lease had ten minutes left; released, the run is claimable now.
    const claimed = await readLedger(db, (ledger) => ledger.claim('next-worker'));
    expect(claimed).toMatchObject({ id: created.run.run_id, phase: 'composing' });
  });
});
