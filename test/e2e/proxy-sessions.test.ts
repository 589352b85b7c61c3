// runledger proxy in front of a server that keeps state per session: each tenant gets an upstream
// session of its own (a process of its own over stdio, an MCP session of its own over HTTP), and every
// typed error the proxy gives reaches an SDK client that validates output schemas.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  LoggingMessageNotificationSchema,
  McpError,
  type CallToolResult,
  type LoggingMessageNotification,
} from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { connectHttp, killAll, startHttp } from '../helpers/http.js';
import { CLI, readLedger, startStdio, tempDb, until, type StdioServer } from '../helpers/mcp.js';

const SESSION_SERVER = fileURLToPath(new URL('../fixtures/session-server.mjs', import.meta.url));
const TOKENS = { RUNLEDGER_TOKENS: 'acme:acme-token-0123456789abcdef,globex:globex-token-0123456789abcdef' };
const ACME = 'acme-token-0123456789abcdef';
const GLOBEX = 'globex-token-0123456789abcdef';
const key = (n: number) => `session-test-key-${String(n).padStart(6, '0')}`;

const clients: Client[] = [];
const children: ChildProcess[] = [];
const stdioProxies: StdioServer[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await Promise.all(stdioProxies.splice(0).map((s) => s.close().catch(() => undefined)));
  for (const child of children.splice(0))
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await killAll();
});

async function client(url: string, token: string): Promise<Client> {
  const c = await connectHttp(url, token);
  clients.push(c);
  return c;
}

/** The fixture over Streamable HTTP, on `port` when given (to bring it back where it was). */
async function startUpstream(flags: string[] = [], port = 0): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [SESSION_SERVER, '--http', '--port', String(port), ...flags], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.push(child);
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stderr! }).on('line', (line) => {
      const match = /^listening (\S+)/.exec(line);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`the upstream exited with ${code}`)));
  });
  return { url, child };
}

const call = async (c: Client, name: string, args: Record<string, unknown>) =>
  (await c.callTool({ name, arguments: args })) as CallToolResult;
const data = (result: CallToolResult) =>
  (result.structuredContent ?? {}) as Record<string, unknown> & {
    error?: { code: string; details: Record<string, unknown> };
  };
const text = (result: CallToolResult) => (result.content[0] as { text: string }).text;

describe('runledger proxy: an upstream session per tenant', () => {
  it('starts a stdio upstream per tenant: notes, session resources and log levels never cross tenants', async () => {
    const proxy = await startHttp(tempDb(), ['proxy', '--', process.execPath, SESSION_SERVER], TOKENS);
    const [acme, globex] = [await client(proxy.url, ACME), await client(proxy.url, GLOBEX)];
    expect(data(await call(acme, 'note', { idempotency_key: key(1), text: 'acme secret' }))).toEqual({
      id: 'n1',
      text: 'acme secret',
      tenant: 'acme',
    });
    expect(data(await call(globex, 'notes', {}))).toEqual({ notes: [], tenant: 'globex' });
    expect(data(await call(acme, 'notes', {}))).toEqual({ notes: ['acme secret'], tenant: 'acme' });
    const resource = await globex.readResource({ uri: 'notes://session' });
    expect(JSON.parse((resource.contents[0] as { text: string }).text)).toEqual({ notes: [], tenant: 'globex' });

    const heard = {
      acme: [] as LoggingMessageNotification['params'][],
      globex: [] as LoggingMessageNotification['params'][],
    };
    acme.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void heard.acme.push(n.params));
    globex.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void heard.globex.push(n.params));
    await acme.setLoggingLevel('error');
    await call(acme, 'say', { idempotency_key: key(2), text: 'acme info', level: 'info' });
    await call(globex, 'say', { idempotency_key: key(3), text: 'globex info', level: 'info' });
    await call(acme, 'say', { idempotency_key: key(4), text: 'acme error', level: 'error' });
    await until(async () => (heard.acme.length > 0 && heard.globex.length > 0 ? true : undefined), 'log messages');
    // acme's level held back its info line and nothing of globex's; globex's level is its own.
    expect(heard.acme.map((m) => m.data)).toEqual(['acme error']);
    expect(heard.globex.map((m) => m.data)).toEqual(['globex info']);
  });

  it('opens an MCP session per tenant on an HTTP upstream', async () => {
    const upstream = await startUpstream();
    const proxy = await startHttp(tempDb(), ['proxy', '--upstream-url', upstream.url], TOKENS);
    const [acme, globex] = [await client(proxy.url, ACME), await client(proxy.url, GLOBEX)];
    await call(acme, 'note', { idempotency_key: key(5), text: 'only acme' });
    expect(data(await call(globex, 'notes', {})).notes).toEqual([]);
    expect(data(await call(acme, 'notes', {})).notes).toEqual(['only acme']);
  });

  it('gives each client session its own upstream session with --upstream-per-session', async () => {
    const proxy = await startHttp(
      tempDb(),
      ['proxy', '--upstream-per-session', '--', process.execPath, SESSION_SERVER],
      TOKENS,
    );
    const [first, second] = [await client(proxy.url, ACME), await client(proxy.url, ACME)];
    await call(first, 'note', { idempotency_key: key(6), text: 'first session' });
    expect(data(await call(second, 'notes', {})).notes).toEqual([]);
    expect(data(await call(first, 'notes', {})).notes).toEqual(['first session']);
  });

  it('keeps at most --upstream-max upstream sessions: an idle one is closed for a new tenant, a busy one never', async () => {
    const proxy = await startHttp(
      tempDb(),
      ['proxy', '--upstream-max', '1', '--', process.execPath, SESSION_SERVER, '--work-ms', '1500'],
      TOKENS,
    );
    const [acme, globex] = [await client(proxy.url, ACME), await client(proxy.url, GLOBEX)];
    await call(acme, 'note', { idempotency_key: key(7), text: 'forgotten when closed' });
    // globex's first call closes acme's idle upstream session (its state goes with it).
    expect(data(await call(globex, 'notes', {})).notes).toEqual([]);
    expect(data(await call(acme, 'notes', {})).notes).toEqual([]);
    // acme's call is in flight: globex is refused, typed, with nothing stored, and may retry the same key.
    const slow = call(acme, 'note', { idempotency_key: key(8), text: 'slow' }).catch((err: Error) => err);
    const refused = await until(async () => {
      const answer = await call(globex, 'note', { idempotency_key: key(9), text: 'refused' });
      return answer.isError ? answer : undefined;
    }, 'globex to be refused while acme is busy');
    expect(data(refused).error).toMatchObject({ code: 'upstream_unavailable' });
    expect(text(refused)).toContain('--upstream-max');
    expect(data((await slow) as CallToolResult).text).toBe('slow');
    expect(data(await call(globex, 'note', { idempotency_key: key(9), text: 'refused' })).text).toBe('refused');
  });
});

describe('runledger proxy: typed errors a validating client accepts', () => {
  const open = async (db: string, flags: string[], upstreamFlags: string[] = []) => {
    const proxy = await startStdio(db, [
      'proxy',
      '--lease-ms',
      '1000',
      ...flags,
      '--',
      process.execPath,
      SESSION_SERVER,
      ...upstreamFlags,
    ]);
    stdioProxies.push(proxy);
    // tools/list first, so that the client holds every output schema and validates against it.
    const note = (await proxy.client.listTools()).tools.find((t) => t.name === 'note');
    expect(note?.outputSchema).toBeDefined();
    return proxy;
  };

  it('answers validation_failed, idempotency_key_reused and call_in_progress within the widened output schema', async () => {
    const db = tempDb();
    const { client: c } = await open(db, ['--wait-seconds', '0'], ['--work-ms', '3000']);
    const missing = await call(c, 'note', { text: 'no key' });
    expect(data(missing).error).toMatchObject({
      code: 'validation_failed',
      details: { problems: [{ field: 'idempotency_key' }] },
    });
    expect(text(missing)).toMatch(/idempotency_key is required: .*\. Correct the named fields/);

    const first = call(c, 'note', { idempotency_key: key(10), text: 'slow' });
    await until(
      () => readLedger(db, async (l) => ((await l.listRuns('local')).runs.length > 0 ? true : undefined)),
      'the call to be recorded',
    );
    const early = await call(c, 'note', { idempotency_key: key(10), text: 'slow' });
    expect(data(early).error).toMatchObject({ code: 'call_in_progress' });
    expect(data(await first)).toMatchObject({ text: 'slow' });

    const other = await call(c, 'note', { idempotency_key: key(10), text: 'other' });
    expect(data(other).error).toMatchObject({
      code: 'idempotency_key_reused',
      details: { differing_fields: ['text'] },
    });
    expect(text(other)).toContain('call again with this idempotency_key and the original arguments');
    expect(text(other)).not.toContain('poll_run');
  });

  it('answers outcome_unknown at once after the proxy on this host was killed mid-call, without waiting for its lease', async () => {
    const db = tempDb();
    // A lease far longer than the test: only noticing that the holder's process is gone can end it.
    const first = await open(db, ['--lease-ms', '60000'], ['--work-ms', '600000']);
    const lost = call(first.client, 'note', { idempotency_key: key(11), text: 'lost' }).catch(() => 'lost');
    await until(
      () => readLedger(db, async (l) => ((await l.listRuns('local')).runs.length > 0 ? true : undefined)),
      'the call to be recorded',
    );
    process.kill(first.pid, 'SIGKILL');
    expect(await lost).toBe('lost');
    const second = await open(db, ['--lease-ms', '60000']);
    const asked = Date.now();
    const retry = await call(second.client, 'note', { idempotency_key: key(11), text: 'lost' });
    const waited = Date.now() - asked;
    expect(retry.isError).toBe(true);
    expect(data(retry).error).toMatchObject({ code: 'outcome_unknown', details: { tool: 'note' } });
    // Under a second here; the bound leaves room for a loaded machine, and is far below the lease.
    expect(waited).toBeLessThan(5000);
  });

  it('answers upstream_unavailable while an HTTP upstream is down, stores nothing, and the same key works once it is back', async () => {
    const db = tempDb();
    const upstream = await startUpstream();
    const proxy = await startStdio(db, ['proxy', '--upstream-url', upstream.url]);
    stdioProxies.push(proxy);
    await proxy.client.listTools();
    upstream.child.kill('SIGKILL');
    await new Promise((resolve) => upstream.child.once('exit', resolve));
    // A request the proxy sends on a kept-alive connection the upstream dropped may have reached it
    // (outcome_unknown is the safe answer then): wait until a read-only call cannot connect at all.
    await until(async () => {
      const error = (await call(proxy.client, 'notes', {}))._meta?.['io.runledger/error'] as
        { message?: string } | undefined;
      return error?.message?.startsWith('Could not reach') ? true : undefined;
    }, 'the proxy to find the upstream gone');
    const down = await call(proxy.client, 'note', { idempotency_key: key(12), text: 'later' });
    expect(data(down).error).toMatchObject({ code: 'upstream_unavailable' });
    expect(text(down)).toContain('retry with the same idempotency_key');
    expect(await readLedger(db, async (l) => (await l.listRuns('local')).runs)).toEqual([]);
    await startUpstream([], Number(new URL(upstream.url).port));
    expect(data(await call(proxy.client, 'note', { idempotency_key: key(12), text: 'later' }))).toMatchObject({
      text: 'later',
    });
  });

  it('passes an upstream JSON-RPC error on unchanged: the client reads the code, message and data a direct call gives', async () => {
    const { client: c } = await open(tempDb(), []);
    const bare = new Client({ name: 'bare', version: '0' });
    await bare.connect(new StdioClientTransport({ command: process.execPath, args: [SESSION_SERVER] }));
    clients.push(bare);
    const direct = await call(bare, 'fail_note', { text: 'x' }).catch((e: unknown) => e);
    const proxied = await call(c, 'fail_note', { idempotency_key: key(13), text: 'x' }).catch((e: unknown) => e);
    expect(direct).toBeInstanceOf(McpError);
    expect(proxied).toBeInstanceOf(McpError);
    const { code, message, data: detail } = direct as McpError;
    expect(proxied).toMatchObject({ code, message, data: detail });
    expect(message).toContain('no notes today: x');
  });

  it('names upstream_unavailable, with what to check, when the upstream cannot be started', async () => {
    const child = spawn(process.execPath, [CLI, '--db', tempDb(), 'proxy', '--', '/nonexistent/mcp-server'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise((resolve) => child.once('exit', resolve));
    expect(code).toBe(1);
    expect(stderr).toContain('upstream_unavailable: Could not reach the upstream MCP server (/nonexistent/mcp-server)');
    expect(stderr).toContain('Check that the upstream command runs on its own');
    expect(stderr).not.toContain('idempotency_key');
  });
});

describe('runledger proxy over stdio', () => {
  it('passes logging through: the level reaches the upstream, its messages reach the client', async () => {
    const proxy = await startStdio(tempDb(), ['proxy', '--', process.execPath, SESSION_SERVER]);
    stdioProxies.push(proxy);
    const heard: unknown[] = [];
    proxy.client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void heard.push(n.params.data));
    await proxy.client.setLoggingLevel('warning');
    await call(proxy.client, 'say', { idempotency_key: key(14), text: 'quiet', level: 'info' });
    await call(proxy.client, 'say', { idempotency_key: key(15), text: 'loud', level: 'warning' });
    await until(async () => (heard.length > 0 ? true : undefined), 'a log message');
    expect(heard).toEqual(['loud']);
  });
});
