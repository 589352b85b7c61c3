// The HTTP service under hostile load, end to end on the built CLI: slow bodies, refused requests,
// batches, depth bombs, connection and session caps, and what reaches the log. Raw sockets where the
// SDK's client would not misbehave on purpose; the SDK's client for the calls that must keep working.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import { connectHttp, killAll, readSse, startHttp } from '../helpers/http.js';
import { callTool, CLI, readLedger, tempDb, until } from '../helpers/mcp.js';

const TOKENS = 'acme:acme-token-0123456789abcdef';
const ACME = 'acme-token-0123456789abcdef';
const COUNTING = fileURLToPath(new URL('../fixtures/counting-server.mjs', import.meta.url));
const MCP_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
};
/** A 100,000-deep array, as JSON text: JSON.stringify of the value itself would overflow the stack. */
const BOMB = '['.repeat(100_000) + ']'.repeat(100_000);

const clients: Client[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await killAll();
});

async function connectClient(url: string, token?: string): Promise<Client> {
  const client = await connectHttp(url, token);
  clients.push(client);
  return client;
}

interface Raw {
  socket: Socket;
  /** Everything the server has sent so far. */
  received(): string;
  /** Resolve with the milliseconds from the first byte sent: the server's FIN, and the full close. */
  ended: Promise<number>;
  closed: Promise<number>;
}

/** A raw connection that sends `head` (request line and headers, with their blank line) and `body`. */
async function raw(url: string, head: string, body = ''): Promise<Raw> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  sockets.push(socket);
  socket.on('error', () => undefined);
  await new Promise((resolve) => socket.once('connect', resolve));
  const started = Date.now();
  let received = '';
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
  const ended = new Promise<number>((resolve) => socket.once('end', () => resolve(Date.now() - started)));
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - started)));
  socket.write(head + body);
  return { socket, received: () => received, ended, closed };
}

/** A POST that declares a large body and trickles it, a byte every `everyMs`, never finishing. */
async function slowPost(url: string, headers: Record<string, string>, everyMs = 200): Promise<Raw> {
  const { host, pathname } = new URL(url);
  const lines = [
    `POST ${pathname} HTTP/1.1`,
    `Host: ${host}`,
    ...Object.entries({ ...MCP_HEADERS, ...headers }).map(([k, v]) => `${k}: ${v}`),
  ];
  const conn = await raw(url, `${lines.join('\r\n')}\r\nContent-Length: 100000\r\n\r\n`, '{');
  const trickle = setInterval(() => conn.socket.writable && conn.socket.write(' '), everyMs);
  void conn.closed.then(() => clearInterval(trickle));
  return conn;
}

/** A keep-alive GET /healthz on a new connection, left open; resolves once its answer is in. */
async function healthConnection(url: string): Promise<Raw> {
  const { host } = new URL(url);
  const conn = await raw(url, `GET /healthz HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
  await until(async () => (/\r\n\r\n[\s\S]*\}/.test(conn.received()) ? true : undefined), 'the health answer');
  return conn;
}

/** Opens a session by hand; returns the headers its requests carry. */
async function rawSession(url: string, protocol = '2025-11-25'): Promise<Record<string, string>> {
  const response = await fetch(url, { method: 'POST', headers: MCP_HEADERS, body: JSON.stringify(INIT) });
  expect(response.status).toBe(200);
  const headers = {
    ...MCP_HEADERS,
    'mcp-session-id': response.headers.get('mcp-session-id')!,
    'mcp-protocol-version': protocol,
  };
  await response.body?.cancel();
  const initialized = await fetch(url, {
    method: 'POST',
    headers,
    body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
  });
  expect(initialized.status).toBe(202);
  return headers;
}

/** Posts one JSON-RPC request as text and reads the answer with its id off the SSE stream. */
async function rawCall(
  url: string,
  headers: Record<string, string>,
  body: string,
  id: number,
): Promise<{ result?: Record<string, unknown>; error?: { code: number } }> {
  const response = await fetch(url, { method: 'POST', headers, body });
  expect(response.status).toBe(200);
  let answer: { id?: number } | undefined;
  await readSse(response, (event) => {
    if (event.data === '') return false;
    const message = JSON.parse(event.data) as { id?: number };
    if (message.id === id) answer = message;
    return answer !== undefined;
  });
  return answer as { result?: Record<string, unknown>; error?: { code: number } };
}

const deepCall = (name: string, args: string, id = 2) =>
  `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"${name}","arguments":{${args}}}}`;

/**
 * Runs a stdio server as a child, with raw lines in and out (the SDK's client would JSON.stringify a
 * depth bomb itself, and overflow); answers its reply to `line`, and what it wrote to stderr.
 */
async function stdioExchange(
  args: string[],
  line: string,
): Promise<{ answer: Record<string, unknown>; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const answers = new Map<number, Record<string, unknown>>();
  createInterface({ input: child.stdout }).on('line', (text) => {
    const message = JSON.parse(text) as { id?: number };
    if (typeof message.id === 'number') answers.set(message.id, message);
  });
  try {
    child.stdin.write(JSON.stringify(INIT) + '\n');
    await until(async () => answers.get(1), 'the answer to initialize');
    child.stdin.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) + '\n');
    child.stdin.write(line + '\n');
    const answer = await until(async () => answers.get(2), 'the answer to the call');
    return { answer, stderr };
  } finally {
    child.stdin.end();
    await new Promise((resolve) => child.once('exit', resolve));
  }
}

const runCount = (db: string, tenant = 'local') => readLedger(db, async (ledger) => (await ledger.usage(tenant)).runs);

describe('Streamable HTTP under hostile load', () => {
  it('cuts bodies that trickle past --body-timeout-ms with 408 and closes them, while normal calls go on', async () => {
    const bound = 3000;
    const server = await startHttp(tempDb(), ['--body-timeout-ms', String(bound)]);
    const client = await connectClient(server.url);
    const slow = await Promise.all(Array.from({ length: 50 }, () => slowPost(server.url, {})));
    let stillOpen = true;
    void Promise.race(slow.map((s) => s.closed)).then(() => (stillOpen = false));
    // While every slow body is still pending, calls on the session keep being answered.
    let answeredMeanwhile = 0;
    for (let i = 0; i < 3; i++) {
      const listed = await callTool(client, 'list_runs', {});
      expect(listed.result.isError).not.toBe(true);
      if (stillOpen) answeredMeanwhile++;
    }
    expect(answeredMeanwhile).toBeGreaterThan(0);
    const closedAfter = await Promise.all(slow.map((s) => s.closed));
    for (const [i, elapsed] of closedAfter.entries()) {
      expect(slow[i]!.received()).toMatch(/^HTTP\/1\.1 408 [\s\S]*connection: close[\s\S]*must arrive within 3000 ms/i);
      expect(elapsed).toBeGreaterThanOrEqual(bound);
      // The bound is kept with room for a loaded machine: 2 s of linger at most, and scheduling.
      expect(elapsed).toBeLessThan(bound + 10_000);
    }
    expect((await callTool(client, 'list_runs', {})).result.isError).not.toBe(true);
  });

  it('answers a request refused before its body at once, and closes its connection without waiting for the body', async () => {
    // A body deadline of ten minutes: only the refusal can end these connections.
    const server = await startHttp(tempDb(), ['--body-timeout-ms', '600000', '--max-body-bytes', '4096'], {
      RUNLEDGER_TOKENS: TOKENS,
    });
    const bearer = { authorization: `Bearer ${ACME}` };
    const cases: [Record<string, string>, number][] = [
      [{}, 401],
      [{ authorization: 'Bearer not-the-token-at-all-000' }, 401],
      [{ ...bearer, origin: 'https://evil.example' }, 403],
      [{ ...bearer, 'content-type': 'text/plain' }, 415],
    ];
    const refused = await Promise.all(cases.map(([headers]) => slowPost(server.url, headers)));
    // Declared larger than --max-body-bytes: refused on its Content-Length.
    refused.push(await slowPost(server.url, bearer));
    cases.push([bearer, 413]);
    for (const [i, conn] of refused.entries()) {
      await conn.ended;
      expect(conn.received()).toMatch(new RegExp(`^HTTP/1\\.1 ${cases[i]![1]} [\\s\\S]*connection: close`, 'i'));
      // The client is still trickling: the connection ends once it has lingered, not with the body.
      await conn.closed;
    }
    expect(refused.at(-1)!.received()).toMatch(/Payload too large/);
  });

  it('refuses a JSON-RPC batch of two creates with -32600, whatever the protocol revision, and makes no run', async () => {
    const db = tempDb();
    const server = await startHttp(db);
    const create = (id: number) => ({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: { name: 'create_social_card', arguments: { headline: `Batch ${id}`, idempotency_key: randomUUID() } },
    });
    for (const protocol of ['2025-11-25', '2025-03-26']) {
      const headers = await rawSession(server.url, protocol);
      const batch = await fetch(server.url, { method: 'POST', headers, body: JSON.stringify([create(2), create(3)]) });
      expect(batch.status).toBe(400);
      expect(await batch.json()).toMatchObject({
        jsonrpc: '2.0',
        id: null,
        error: { code: -32600, message: expect.stringMatching(/batches are not supported/) },
      });
    }
    const stateless = await startHttp(db, ['--stateless']);
    const batch = await fetch(stateless.url, {
      method: 'POST',
      headers: MCP_HEADERS,
      body: JSON.stringify([INIT, create(2)]),
    });
    expect(batch.status).toBe(400);
    expect(await runCount(db)).toBe(0);
  });

  it('answers a 100,000-deep array in an argument with validation_failed, over HTTP and stdio, and through the proxy on both, with no error logged', async () => {
    const db = tempDb();
    const server = await startHttp(db);
    const headers = await rawSession(server.url);
    const args = `"headline":${BOMB},"idempotency_key":"${randomUUID()}"`;
    const overHttp = await rawCall(server.url, headers, deepCall('create_social_card', args), 2);
    expect(overHttp.result).toMatchObject({
      isError: true,
      structuredContent: {
        error: {
          code: 'validation_failed',
          details: { problems: [{ field: 'headline', rule: expect.stringMatching(/64 levels/) }] },
        },
      },
    });
    // Deep anywhere else in a request: a JSON-RPC error, not a crash.
    const deepMeta = `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"_meta":{"x":${BOMB}}}}`;
    expect((await rawCall(server.url, headers, deepMeta, 3)).error).toMatchObject({ code: -32602 });
    expect(await runCount(db)).toBe(0);

    const overStdio = await stdioExchange(['--db', db], deepCall('create_social_card', args));
    expect(overStdio.answer).toMatchObject({ result: { structuredContent: { error: { code: 'validation_failed' } } } });

    const effects = `${db}.effects`;
    const proxied = await stdioExchange(
      ['proxy', '--db', tempDb(), '--', process.execPath, COUNTING, '--log', effects],
      deepCall('create_ticket', `"title":${BOMB},"idempotency_key":"${randomUUID()}"`),
    );
    expect(proxied.answer).toMatchObject({
      result: {
        structuredContent: { error: { code: 'validation_failed', details: { problems: [{ field: 'title' }] } } },
      },
    });
    const proxy = await startHttp(tempDb(), ['proxy', '--', process.execPath, COUNTING, '--log', effects]);
    const overProxy = await rawCall(
      proxy.url,
      await rawSession(proxy.url),
      deepCall('create_ticket', `"title":${BOMB},"idempotency_key":"${randomUUID()}"`),
      2,
    );
    expect(overProxy.result).toMatchObject({
      structuredContent: { error: { code: 'validation_failed', details: { problems: [{ field: 'title' }] } } },
    });
    expect(existsSync(effects) ? readFileSync(effects, 'utf8') : '').toBe('');

    for (const child of [server, proxy]) {
      child.child.kill('SIGTERM');
      await child.exited;
    }
    for (const log of [server.stderr(), overStdio.stderr, proxied.stderr, proxy.stderr()])
      expect(log).not.toMatch(/error|stack/i);
  });

  it('refuses connections past --max-connections with 503 and Retry-After, while an existing session keeps working', async () => {
    const cap = 12;
    const server = await startHttp(tempDb(), ['--max-connections', String(cap)]);
    const client = await connectClient(server.url);
    expect((await callTool(client, 'list_runs', {})).result.isError).not.toBe(true);
    let refused: Raw | undefined;
    for (let open = 0; open <= cap && refused === undefined; open++) {
      const conn = await healthConnection(server.url);
      if (conn.received().startsWith('HTTP/1.1 503')) refused = conn;
    }
    expect(refused?.received()).toMatch(
      /^HTTP\/1\.1 503 [\s\S]*retry-after: 1[\s\S]*connection: close[\s\S]*at most 12 connections/i,
    );
    await refused!.closed;
    // The session's own connections were there first: its calls still go through.
    for (let i = 0; i < 3; i++) expect((await callTool(client, 'list_runs', {})).result.isError).not.toBe(true);
    // Once connections close, new ones are served again.
    for (const socket of sockets.splice(0)) socket.destroy();
    await until(
      async () => ((await healthConnection(server.url)).received().startsWith('HTTP/1.1 200') ? true : undefined),
      'a new connection to be served',
    );
  });

  it('closes a session idle past --session-idle-ms, so a tenant at its cap gets a place again', async () => {
    const server = await startHttp(tempDb(), ['--max-tenant-sessions', '1', '--session-idle-ms', '1000']);
    const first = await rawSession(server.url);
    const refused = await fetch(server.url, { method: 'POST', headers: MCP_HEADERS, body: JSON.stringify(INIT) });
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(await refused.json()).toMatchObject({
      error: { message: expect.stringMatching(/at most 1 sessions per tenant/) },
    });
    // Refused initializes do not touch the idle session; once it has timed out, one is accepted.
    await until(async () => {
      const again = await fetch(server.url, { method: 'POST', headers: MCP_HEADERS, body: JSON.stringify(INIT) });
      await again.body?.cancel();
      return again.status === 200 ? true : undefined;
    }, 'the idle session to be closed');
    const list = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' });
    expect((await fetch(server.url, { method: 'POST', headers: first, body: list })).status).toBe(404);
  });

  it('logs dropped uploads and slow bodies as one summary line, not a line each', async () => {
    const server = await startHttp(tempDb(), ['--body-timeout-ms', '1000']);
    const dropped = await Promise.all(Array.from({ length: 40 }, () => slowPost(server.url, {})));
    for (const conn of dropped) conn.socket.destroy();
    await Promise.all(dropped.map((conn) => conn.closed));
    const slow = await Promise.all(Array.from({ length: 5 }, () => slowPost(server.url, {})));
    await Promise.all(slow.map((conn) => conn.closed));
    // A request answered after them is handled after they were.
    expect((await fetch(`${server.origin}/healthz`)).status).toBe(200);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    const log = server.stderr();
    expect(log).not.toMatch(/HTTP request failed/);
    const summaries = log.split('\n').filter((line) => line.includes('refused or cut short'));
    expect(summaries).toHaveLength(1);
    expect(JSON.parse(summaries[0]!.slice(summaries[0]!.indexOf('{')))).toMatchObject({ aborted: 40, body_timeout: 5 });
  });
});
