// runledger proxy in front of a server whose tools append a line to a file for every action, over
// real stdio: retries, concurrent duplicates and kills never repeat an action, and every caller of
// one key gets the same answer.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ToolListChangedNotificationSchema, type CallToolResult, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { connectHttp, killAll, startHttp } from '../helpers/http.js';
import { backends, freshSchema, PG_URL } from '../helpers/ledgers.js';
import { readLedger, startStdio, tempDb, until, type StdioServer } from '../helpers/mcp.js';

const COUNTING = fileURLToPath(new URL('../fixtures/counting-server.mjs', import.meta.url));

interface Effect {
  tool: string;
  id?: string;
  args: Record<string, unknown>;
  key?: string;
}

function effects(log: string): Effect[] {
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Effect);
}

const open: StdioServer[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close().catch(() => undefined)));
});

async function startProxy(db: string, log: string, flags: string[] = [], workMs = 0): Promise<StdioServer> {
  const proxy = await startStdio(db, [
    'proxy',
    '--lease-ms',
    '1000',
    ...flags,
    '--',
    process.execPath,
    COUNTING,
    '--log',
    log,
    '--work-ms',
    String(workMs),
  ]);
  open.push(proxy);
  return proxy;
}

async function startBare(log: string): Promise<Client> {
  const client = new Client({ name: 'bare', version: '0' });
  await client.connect(new StdioClientTransport({ command: process.execPath, args: [COUNTING, '--log', log] }));
  open.push({ client, close: () => client.close() } as StdioServer);
  return client;
}

const call = async (
  client: Client,
  name: string,
  args: Record<string, unknown>,
  options?: Parameters<Client['callTool']>[2],
) => (await client.callTool({ name, arguments: args }, undefined, options)) as CallToolResult;
const data = (result: CallToolResult) =>
  (result.structuredContent ?? {}) as Record<string, unknown> & {
    error?: { code: string; message: string; details: Record<string, unknown> };
  };
const replayed = (result: CallToolResult) => result._meta?.['io.runledger/replayed'];
const PROXY_WORDING_PART = 'runledger fences this tool';
const key = (n: number) => `proxy-test-key-${String(n).padStart(6, '0')}`;

describe('runledger proxy', () => {
  it('fences every mutating tool with a required key and the retry wording, and leaves read-only ones as they are', async () => {
    const db = tempDb();
    const proxy = await startProxy(db, `${db}.effects`);
    const bare = await startBare(`${db}.bare`);
    const fenced = new Map((await proxy.client.listTools()).tools.map((t) => [t.name, t]));
    const direct = new Map((await bare.listTools()).tools.map((t) => [t.name, t]));
    // A tool that runs only as an MCP task is not offered: the proxy takes no task-augmented calls.
    expect([...fenced.keys()]).toEqual([...direct.keys()].filter((name) => name !== 'deep_research'));
    for (const name of ['create_ticket', 'set_status', 'charge_card', 'reject_call', 'enable_extra']) {
      const tool = fenced.get(name)!;
      expect(tool.inputSchema.required).toContain('idempotency_key');
      expect(tool.inputSchema.properties?.idempotency_key).toMatchObject({
        type: 'string',
        minLength: 16,
        maxLength: 128,
      });
      expect(tool.description).toContain('send the SAME key');
      expect(tool.description!.startsWith(direct.get(name)!.description!)).toBe(true);
    }
    expect(fenced.get('list_tickets')).toEqual(direct.get('list_tickets'));
  });

  it('sends a retried call once: the retry gets the first answer, marked replayed, and the key never reaches the upstream', async () => {
    const db = tempDb();
    const log = `${db}.effects`;
    const { client } = await startProxy(db, log);
    const first = await call(client, 'create_ticket', { idempotency_key: key(1), title: 'Printer on fire' });
    const retry = await call(client, 'create_ticket', { idempotency_key: key(1), title: 'Printer on fire' });
    expect(data(first).ticket_id).toMatch(/^t_1_/);
    expect(retry.content).toEqual(first.content);
    expect(retry.structuredContent).toEqual(first.structuredContent);
    expect([replayed(first), replayed(retry)]).toEqual([false, true]);
    expect(retry._meta?.['io.runledger/run_id']).toBe(first._meta?.['io.runledger/run_id']);
    const done = effects(log);
    expect(done).toHaveLength(1);
    // Stripped from the arguments, passed in _meta for servers that understand it.
    expect(done[0]!.args).toEqual({ title: 'Printer on fire' });
    expect(done[0]!.key).toBe(key(1));
  });

  it('makes 50 concurrent duplicates one upstream call, every caller getting the same answer', async () => {
    const db = tempDb();
    const log = `${db}.effects`;
    const { client } = await startProxy(db, log, [], 300);
    const answers = await Promise.all(
      Array.from({ length: 50 }, () => call(client, 'create_ticket', { idempotency_key: key(2), title: 'Burst' })),
    );
    expect(effects(log)).toHaveLength(1);
    expect(new Set(answers.map((a) => JSON.stringify(a.structuredContent))).size).toBe(1);
    expect(answers.filter((a) => replayed(a) === false)).toHaveLength(1);
  });

  it('keeps a call going when its client gives up, so the retry gets its answer without a second action', async () => {
    const db = tempDb();
    const log = `${db}.effects`;
    const { client } = await startProxy(db, log, [], 1500);
    const abort = new AbortController();
    const gaveUp = call(
      client,
      'create_ticket',
      { idempotency_key: key(3), title: 'Slow' },
      { signal: abort.signal },
    ).catch((err: Error) => err);
    await until(async () => (effects(log).length === 1 ? true : undefined), 'the upstream to act');
    abort.abort();
    expect(await gaveUp).toBeInstanceOf(Error);
    const retry = await call(client, 'create_ticket', { idempotency_key: key(3), title: 'Slow' });
    expect(data(retry).ticket_id).toBe(effects(log)[0]!.id);
    expect(effects(log)).toHaveLength(1);
  });

  it('answers call_in_progress to a retry that outwaits --wait-seconds, then the first answer once it is there', async () => {
    const db = tempDb();
    const log = `${db}.effects`;
    const { client } = await startProxy(db, log, ['--wait-seconds', '1'], 4000);
    const ticket = { idempotency_key: key(11), title: 'Slow one' };
    const first = call(client, 'create_ticket', ticket);
    await until(async () => (effects(log).length === 1 ? true : undefined), 'the upstream to act');
    const early = await call(client, 'create_ticket', ticket);
    expect(data(early).error).toMatchObject({
      code: 'call_in_progress',
      details: { tool: 'create_ticket', waited_seconds: 1 },
    });
    expect((early.content[0] as { text: string }).text).toContain('SAME idempotency_key');
    const answered = await first;
    expect((await call(client, 'create_ticket', ticket)).structuredContent).toEqual(answered.structuredContent);
    expect(effects(log)).toHaveLength(1);
  });

  it('refuses the same key with other arguments, naming the field, and does nothing', async () => {
    const db = tempDb();
    const log = `${db}.effects`;
    const { client } = await startProxy(db, log);
    await call(client, 'create_ticket', { idempotency_key: key(4), title: 'One', priority: 'low' });
    const other = await call(client, 'create_ticket', { idempotency_key: key(4), title: 'One', priority: 'high' });
    expect(other.isError).toBe(true);
    expect(data(other).error).toMatchObject({
      code: 'idempotency_key_reused',
      details: { differing_fields: ['priority'] },
    });
    const noKey = await call(client, 'create_ticket', { title: 'No key' });
    expect(data(noKey).error).toMatchObject({
      code: 'validation_failed',
      details: { problems: [{ field: 'idempotency_key' }] },
    });
    expect(effects(log)).toHaveLength(1);
  });

  it('does not offer a tool that runs only as a task: a call to it is refused before anything is stored or sent', async () => {
    const db = tempDb();
    const log = `${db}.effects`;
    const { client } = await startProxy(db, log);
    const refused = await call(client, 'deep_research', { idempotency_key: key(13), topic: 'x' }).catch(
      (e: Error) => e,
    );
    expect(refused).toMatchObject({
      code: -32601,
      message: expect.stringContaining('not offered through runledger proxy'),
    });
    expect(effects(log)).toEqual([]);
    expect(await readLedger(db, async (ledger) => (await ledger.listRuns('local')).runs)).toEqual([]);
  });

  it('passes read-only tools through unchanged, with no ledger write', async () => {
    const db = tempDb();
    const { client } = await startProxy(db, `${db}.effects`);
    const bare = await startBare(`${db}.effects`);
    const through = await call(client, 'list_tickets', {});
    expect(through).toEqual(await call(bare, 'list_tickets', {}));
    expect(through._meta).toBeUndefined();
    expect(await readLedger(db, async (ledger) => (await ledger.listRuns('local')).runs)).toEqual([]);
  });

  it('stores an isError answer and replays it, unless --retry-errors frees the key', async () => {
    const db = tempDb();
    const log = `${db}.effects`;
    const { client } = await startProxy(db, log);
    const declined = await call(client, 'charge_card', { idempotency_key: key(5), amount: 500 });
    const again = await call(client, 'charge_card', { idempotency_key: key(5), amount: 500 });
    expect(declined.isError).toBe(true);
    expect(again.structuredContent).toEqual(declined.structuredContent);
    expect(replayed(again)).toBe(true);
    expect(effects(log)).toHaveLength(1);

    const db2 = tempDb();
    const log2 = `${db2}.effects`;
    const retrying = await startProxy(db2, log2, ['--retry-errors']);
    await call(retrying.client, 'charge_card', { idempotency_key: key(5), amount: 500 });
    const second = await call(retrying.client, 'charge_card', { idempotency_key: key(5), amount: 500 });
    expect(replayed(second)).toBe(false);
    expect(effects(log2)).toHaveLength(2);
  });

  it('does not store a JSON-RPC error: it reaches the client as it came, and the key may be tried again', async () => {
    const db = tempDb();
    const { client } = await startProxy(db, `${db}.effects`);
    for (let i = 0; i < 2; i++) {
      const err = await call(client, 'reject_call', { idempotency_key: key(6), reason: 'no' }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toContain('refused: no');
    }
    expect(await readLedger(db, async (ledger) => (await ledger.listRuns('local')).runs)).toEqual([]);
  });

  it('follows the upstream tool list as it changes, fencing a new tool too', async () => {
    const db = tempDb();
    const { client } = await startProxy(db, `${db}.effects`);
    let heard = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => void heard++);
    await call(client, 'enable_extra', { idempotency_key: key(7) });
    await until(async () => (heard > 0 ? true : undefined), 'tools/list_changed');
    const extra = (await client.listTools()).tools.find((t: Tool) => t.name === 'extra_tool');
    expect(extra?.inputSchema.required).toContain('idempotency_key');
  });

  it('answers outcome_unknown after a kill mid-call, without a second action; an idempotent tool is sent once more', async () => {
    const db = tempDb();
    const log = `${db}.effects`;
    const first = await startProxy(db, log, [], 600_000);
    const ticket = { idempotency_key: key(8), title: 'Killed' };
    const lost = call(first.client, 'create_ticket', ticket).catch(() => 'lost');
    await until(async () => (effects(log).length === 1 ? true : undefined), 'the upstream to act');
    process.kill(first.pid, 'SIGKILL');
    expect(await lost).toBe('lost');

    const second = await startProxy(db, log, [], 600_000);
    const retry = await call(second.client, 'create_ticket', ticket);
    expect(retry.isError).toBe(true);
    expect(data(retry).error).toMatchObject({ code: 'outcome_unknown', details: { tool: 'create_ticket' } });
    expect((retry.content[0] as { text: string }).text).toContain('NEW idempotency_key');
    // Stored: every later retry hears the same, and nothing is sent.
    const later = await call(second.client, 'create_ticket', ticket);
    expect(data(later).error?.code).toBe('outcome_unknown');
    expect(effects(log)).toHaveLength(1);

    const status = { idempotency_key: key(9), ticket: 't_1', status: 'closed' };
    const cut = call(second.client, 'set_status', status).catch(() => 'lost');
    await until(async () => (effects(log).length === 2 ? true : undefined), 'set_status to act');
    process.kill(second.pid, 'SIGKILL');
    expect(await cut).toBe('lost');
    const third = await startProxy(db, log);
    const resent = await call(third.client, 'set_status', status);
    expect(data(resent)).toEqual({ ticket_id: 't_1', status: 'closed' });
    // The upstream acted again: said so, not passed off as a replay.
    expect([replayed(resent), resent._meta?.['io.runledger/resent']]).toEqual([false, true]);
    expect(effects(log).filter((e) => e.tool === 'set_status')).toHaveLength(2);
    // Once answered, it is stored like any other answer.
    expect(replayed(await call(third.client, 'set_status', status))).toBe(true);
    expect(effects(log)).toHaveLength(3);
  }, 60_000);

  it('answers outcome_unknown when the upstream dies mid-call, and starts it again for the next call', async () => {
    const db = tempDb();
    const log = `${db}.effects`;
    const { client } = await startProxy(db, log, [], 600_000);
    const cut = call(client, 'create_ticket', { idempotency_key: key(12), title: 'Upstream dies' });
    const acted = await until(async () => effects(log)[0], 'the upstream to act');
    process.kill(Number(acted.id!.split('_')[2]), 'SIGKILL');
    expect(data(await cut).error).toMatchObject({ code: 'outcome_unknown', details: { tool: 'create_ticket' } });
    // A read-only call reconnects to a new upstream process; the dead call's key keeps its answer.
    expect(data(await call(client, 'list_tickets', {}))).toEqual({ count: 1 });
    expect(
      data(await call(client, 'create_ticket', { idempotency_key: key(12), title: 'Upstream dies' })).error?.code,
    ).toBe('outcome_unknown');
    expect(effects(log)).toHaveLength(1);
  });

  it('shows proxied calls in runs list and get_usage of a runledger server on the same ledger', async () => {
    const db = tempDb();
    const log = `${db}.effects`;
    const { client } = await startProxy(db, log);
    await call(client, 'create_ticket', { idempotency_key: key(10), title: 'Counted' });
    await call(client, 'create_ticket', { idempotency_key: key(10), title: 'Counted' });
    const server = await startStdio(db, ['--concurrency', '0']);
    open.push(server);
    // Replays are counted in memory and written every few seconds.
    const usage = await until(async () => {
      const seen = data(await call(server.client, 'get_usage', {}));
      return (seen.replays_absorbed as number) > 0 ? seen : undefined;
    }, 'the replay to be counted');
    expect(usage).toMatchObject({
      runs: 1,
      by_tool: { create_ticket: { runs: 1, replays_absorbed: 1 } },
      by_provider: { 'counting-server': { charges: 1, credits: 0 } },
    });
    const listed = data(await call(server.client, 'list_runs', {}));
    expect(listed.runs).toMatchObject([{ tool: 'create_ticket', idempotency_key: key(10), phase: 'done' }]);
  });

  it('keeps a proxied tool named like a runledger generation tool apart from its runs, under the same key', async () => {
    const db = tempDb();
    const log = `${db}.effects`;
    const { client } = await startProxy(db, log);
    const posted = await call(client, 'social_card', { idempotency_key: key(11), headline: 'Launch day' });
    expect(data(posted)).toEqual({ posted: 'Launch day' });
    const server = await startStdio(db, ['--concurrency', '1']);
    open.push(server);
    // The same tenant and key, through runledger's own create_social_card: a run of its own, rendered
    // and billed; not a replay of the proxied call, nor a refusal for other arguments.
    const card = data(
      await call(server.client, 'create_social_card', {
        idempotency_key: key(11),
        headline: 'Launch day',
        wait_seconds: 50,
      }),
    );
    expect(card).toMatchObject({ tool: 'social_card', phase: 'done', replayed: false, billed: true });
    const retried = await call(client, 'social_card', { idempotency_key: key(11), headline: 'Launch day' });
    expect(replayed(retried)).toBe(true);
    expect(data(retried)).toEqual({ posted: 'Launch day' });
    expect(effects(log).filter((e) => e.tool === 'social_card')).toHaveLength(1);
    const runs = await readLedger(db, async (ledger) => (await ledger.listRuns('local')).runs);
    expect(runs.map((run) => [run.executor, run.tool, run.phase, run.cost]).sort()).toEqual([
      ['engine', 'social_card', 'done', card.cost_credits],
      ['proxy', 'social_card', 'done', 0],
    ]);
  });
});

describe.runIf(backends.some((b) => b.name === 'PostgreSQL'))('runledger proxy on PostgreSQL', () => {
  it('makes concurrent duplicates through two proxy processes sharing one database one upstream call', async () => {
    const db = `${PG_URL}?schema=${freshSchema()}`;
    const log = `${tempDb()}.effects`;
    const [a, b] = await Promise.all([startProxy(db, log, [], 300), startProxy(db, log, [], 300)]);
    const ticket = { idempotency_key: key(30), title: 'Shared' };
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => call(i % 2 === 0 ? a.client : b.client, 'create_ticket', ticket)),
    );
    // Both proxies launched their own upstream; between them the action happened once.
    expect(effects(log)).toHaveLength(1);
    expect(new Set(answers.map((r) => JSON.stringify(r.structuredContent))).size).toBe(1);
    expect(answers.filter((r) => replayed(r) === false)).toHaveLength(1);
  });
});

describe('runledger proxy over Streamable HTTP', () => {
  afterEach(killAll);

  it('serves tenants by token in front of an HTTP upstream that wants its own token, each tenant its own keys', async () => {
    const upstream = await startHttp(tempDb(), ['--concurrency', '1'], {
      RUNLEDGER_TOKENS: 'proxy:upstream-token-0123456789',
    });
    const proxy = await startHttp(tempDb(), ['proxy', '--upstream-url', upstream.url], {
      RUNLEDGER_TOKENS: 'acme:acme-token-0123456789abcdef,globex:globex-token-0123456789abcdef',
      RUNLEDGER_UPSTREAM_TOKEN: 'upstream-token-0123456789',
    });
    expect((await fetch(proxy.url, { method: 'POST', body: '{}' })).status).toBe(401);
    const acme = await connectHttp(proxy.url, 'acme-token-0123456789abcdef');
    const globex = await connectHttp(proxy.url, 'globex-token-0123456789abcdef');
    try {
      const tools = new Map((await acme.listTools()).tools.map((t) => [t.name, t]));
      // runledger's own create tools are mutating (fenced again here); poll_run is read-only (passed).
      expect(tools.get('create_social_card')?.description).toContain(PROXY_WORDING_PART);
      expect(tools.get('poll_run')?.description).not.toContain(PROXY_WORDING_PART);
      const card = { headline: 'Through the proxy', idempotency_key: key(20) };
      const first = await call(acme, 'create_social_card', card);
      const retry = await call(acme, 'create_social_card', card);
      expect(data(retry).run_id).toBe(data(first).run_id);
      expect([replayed(first), replayed(retry)]).toEqual([false, true]);
      // Another tenant's key is its own: its first call goes upstream (where runledger replays it).
      expect(replayed(await call(globex, 'create_social_card', card))).toBe(false);
      const upstreamUsage = await connectHttp(upstream.url, 'upstream-token-0123456789');
      try {
        expect(data(await call(upstreamUsage, 'get_usage', {}))).toMatchObject({ runs: 1 });
      } finally {
        await upstreamUsage.close();
      }
    } finally {
      await Promise.all([acme.close(), globex.close()]);
    }
  });
});
