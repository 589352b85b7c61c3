// `runledger record` between a real client and a real server: the bytes go through untouched, and
// the transcript holds each tools/call with its answer.
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import { startStdioProxy } from '../../src/proxy/stdio-proxy.js';
import { readTranscript } from '../../src/harness/transcript.js';
import { recordSession, tempDir, toyServer } from '../helpers/harness.js';
import { callTool, CLI, PRODUCT_SHOT, startStdio, tempDb, until, type StdioServer } from '../helpers/mcp.js';

/** A server that writes back every byte it reads: what comes out is what went through both ways. */
const ECHO = [process.execPath, '-e', 'process.stdin.pipe(process.stdout)'];

/** Runs `record` with raw bytes for a client; resolves with what came back and the exit code. */
async function recordRaw(out: string, server: string[], chunks: Buffer[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [CLI, 'record', '--out', out, '--', ...server], {
    env: { ...process.env, ...env },
  });
  const received: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => received.push(chunk));
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  for (const chunk of chunks) {
    // One write per chunk, each flushed before the next, so the pipe sees the same splits.
    await new Promise<void>((resolve) => child.stdin.write(chunk, () => resolve()));
  }
  child.stdin.end();
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  return { code, stdout: Buffer.concat(received), stderr };
}

/** Splits `bytes` at the given offsets, to cut lines and UTF-8 characters in awkward places. */
function cut(bytes: Buffer, offsets: number[]): Buffer[] {
  const edges = [0, ...offsets, bytes.length];
  return edges.slice(1).map((end, i) => bytes.subarray(edges[i], end));
}

const stdioServers: StdioServer[] = [];
afterEach(async () => {
  await Promise.all(stdioServers.splice(0).map((s) => s.close().catch(() => undefined)));
});

describe('runledger record', () => {
  it('forwards every byte unchanged both ways, however the lines are cut, and records the call it saw', async () => {
    const call = {
      jsonrpc: '2.0',
      id: 7,
      method: 'tools/call',
      params: { name: 'create_thing', arguments: { note: 'naïve café ☕ \u2028 "quoted"' } },
    };
    const answer = {
      jsonrpc: '2.0',
      id: 7,
      result: { content: [{ type: 'text', text: '✓ done' }], structuredContent: { run_id: 'run_1' } },
    };
    const input = Buffer.from(
      [
        `{ "jsonrpc" : "2.0", "id": 1, "method": "initialize", "params": {} }`,
        JSON.stringify(call),
        'not json at all, forwarded anyway\r',
        JSON.stringify([{ jsonrpc: '2.0', method: 'notifications/initialized' }]),
        JSON.stringify({
          jsonrpc: '2.0',
          id: 8,
          method: 'tools/call',
          params: { name: 'big', arguments: { blob: 'x'.repeat(200_000) } },
        }),
        JSON.stringify(answer),
        '{"jsonrpc":"2.0","method":"notifications/progress","params":{}} no newline at the end',
      ].join('\n'),
    );
    const mid = input.indexOf('é') + 1; // inside a two-byte character
    const out = join(tempDir(), 'echo.jsonl');
    const { code, stdout } = await recordRaw(out, ECHO, cut(input, [3, mid, mid + 1, 5000, 70_000, input.length - 10]));
    expect(code).toBe(0);
    expect(stdout.equals(input)).toBe(true);
    // The echo sent the answer back towards the client, so the recorder matched it to call 7.
    const transcript = readTranscript(out);
    expect(transcript.calls.map((c) => [c.tool, c.outcome])).toEqual([
      ['create_thing', 'answered'],
      ['big', 'unanswered'],
    ]);
    expect(transcript.calls[0]!.arguments).toEqual(call.params.arguments);
    expect(transcript.calls[0]!.result).toEqual(answer.result);
  });

  it('gives an SDK client the same answers as talking to the server directly, and records them', async () => {
    const flags = ['--concurrency', '0', '--log-level', 'warn']; // runs stay queued: answers do not race the worker
    // One key for both sessions: each has a ledger of its own, and the key is in list_runs' answer.
    const key = randomUUID();
    const session = async (client: Client) => {
      const answers: unknown[] = [
        (await client.listTools()).tools,
        (await client.listResourceTemplates()).resourceTemplates,
      ];
      const calls: [string, Record<string, unknown>][] = [
        ['get_usage', {}],
        ['create_product_shot', { ...PRODUCT_SHOT, idempotency_key: key }],
        ['create_product_shot', { ...PRODUCT_SHOT, idempotency_key: key }],
        ['create_product_shot', { ...PRODUCT_SHOT, variants: 1, idempotency_key: key }],
        ['create_product_shot', { ...PRODUCT_SHOT, idempotency_key: key, dry_run: true }],
        ['create_social_card', { headline: 'Hi', idempotency_key: 'short' }],
        ['poll_run', { idempotency_key: key, tool: 'product_shot' }],
        ['list_runs', {}],
      ];
      for (const [name, args] of calls) answers.push((await callTool(client, name, args)).result);
      return answers;
    };
    // Run ids and times differ between two servers; everything else must be the same.
    const normal = (answers: unknown) =>
      JSON.parse(
        JSON.stringify(answers)
          .replace(/run_[\w-]{21}/g, 'RUN')
          .replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, 'TIME'),
      );

    const direct = await startStdio(tempDb(), flags);
    stdioServers.push(direct);
    const withoutRecord = await session(direct.client);

    const out = join(tempDir(), 'session.jsonl');
    let throughRecord: unknown[] = [];
    await recordSession(out, [process.execPath, CLI, '--db', tempDb(), ...flags], async (client) => {
      throughRecord = await session(client);
    });
    expect(normal(throughRecord)).toEqual(normal(withoutRecord));

    const transcript = readTranscript(out);
    expect(transcript.server).toEqual({ name: 'runledger', version: expect.any(String) });
    expect(transcript.command).toEqual([process.execPath, CLI, '--db', expect.any(String), ...flags]);
    expect(transcript.calls.map((c) => c.tool)).toEqual([
      'get_usage',
      'create_product_shot',
      'create_product_shot',
      'create_product_shot',
      'create_product_shot',
      'create_social_card',
      'poll_run',
      'list_runs',
    ]);
    expect(transcript.calls.map((c) => c.result)).toEqual(throughRecord.slice(2));
    expect(
      transcript.calls.every(
        (c, i) => c.seq === i + 1 && c.ms >= 0 && c.outcome === 'answered' && !Number.isNaN(Date.parse(c.at ?? '')),
      ),
    ).toBe(true);
  });

  it('records a call the client cancelled, and one the server never answered, as such', async () => {
    const out = join(tempDir(), 'cancel.jsonl');
    const silent = [process.execPath, '-e', 'process.stdin.resume()'];
    const lines = [
      { jsonrpc: '2.0', id: 'a', method: 'tools/call', params: { name: 'slow', arguments: {} } },
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'a', reason: 'timeout' } },
      { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'lost', arguments: { n: 1 } } },
    ];
    const { code } = await recordRaw(out, silent, [Buffer.from(lines.map((l) => JSON.stringify(l) + '\n').join(''))]);
    expect(code).toBe(0);
    expect(readTranscript(out).calls.map((c) => [c.tool, c.outcome])).toEqual([
      ['slow', 'cancelled'],
      ['lost', 'unanswered'],
    ]);
  });

  it('redacts bearer tokens, secret environment values and --redact patterns from the transcript, not from the session', async () => {
    const out = join(tempDir(), 'secret.jsonl');
    const secret = `s3cr3t-${randomUUID()}`.slice(0, 30);
    const labels = ['Bearer abc.DEF-123_x', `env ${secret}`, 'card 4242-4242'];
    const child = spawn(
      process.execPath,
      [CLI, 'record', '--out', out, '--redact', '\\d{4}-\\d{4}', '--', ...toyServer(['--bare'])],
      { env: { ...process.env, MY_SERVICE_TOKEN: secret } },
    );
    const answers: string[] = [];
    let buffer = '';
    child.stdout.on('data', (chunk: Buffer) => {
      buffer += chunk.toString();
      for (let end = buffer.indexOf('\n'); end >= 0; end = buffer.indexOf('\n')) {
        answers.push(buffer.slice(0, end));
        buffer = buffer.slice(end + 1);
      }
    });
    const send = (message: object) => child.stdin.write(JSON.stringify(message) + '\n');
    send({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    });
    await until(async () => (answers.length > 0 ? true : undefined), 'initialize');
    send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    labels.forEach((label, i) =>
      send({
        jsonrpc: '2.0',
        id: i + 1,
        method: 'tools/call',
        params: { name: 'create_widget', arguments: { idempotency_key: randomUUID(), label } },
      }),
    );
    await until(async () => (answers.length > labels.length ? true : undefined), 'the answers');
    child.stdin.end();
    await new Promise((resolve) => child.once('close', resolve));

    // The client got its answers as the server gave them...
    for (const label of labels) expect(answers.some((a) => a.includes(JSON.stringify(label).slice(1, -1)))).toBe(true);
    // ...and the transcript holds none of the secrets, in the arguments or in the answers.
    const text = readFileSync(out, 'utf8');
    for (const leaked of ['abc.DEF-123_x', secret, '4242-4242']) expect(text).not.toContain(leaked);
    const calls = readTranscript(out).calls;
    expect(calls.map((c) => c.arguments.label)).toEqual(['Bearer [REDACTED]', 'env [REDACTED]', 'card [REDACTED]']);
    expect(calls.map((c) => (c.result?.structuredContent as { label: string }).label)).toEqual([
      'Bearer [REDACTED]',
      'env [REDACTED]',
      'card [REDACTED]',
    ]);
  });

  it('exits with the server’s own exit code, and 127 with a message when the server cannot be started', async () => {
    const out = join(tempDir(), 'exit.jsonl');
    expect((await recordRaw(out, [process.execPath, '-e', 'process.exit(5)'], [])).code).toBe(5);
    const missing = await recordRaw(out, ['runledger-no-such-server'], []);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toMatch(
      /cannot start the server: runledger-no-such-server: spawn runledger-no-such-server ENOENT/,
    );
  });

  it.each([
    [['--', 'x'], /record needs --out FILE/],
    [['--out', 'f.jsonl'], /record needs the server command after --/],
    [['--out', 'f.jsonl', '--redact', '(', '--', 'x'], /--redact "\(" is not a regular expression/],
    [['--out', '/nonexistent-dir/f.jsonl', '--', 'x'], /--out: cannot write \/nonexistent-dir\/f\.jsonl/],
    [['--out', 'f.jsonl', 'x'], /record: unexpected "x"; the server command goes after --/],
    [['--bogus', '--', 'x'], /record: Unknown option '--bogus'/],
  ])('exits 2 naming the flag for %j', (args, message) => {
    const result = spawnSync(process.execPath, [CLI, 'record', ...args], {
      encoding: 'utf8',
      input: '',
      cwd: tempDir(),
    });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stdout).toBe('');
  });
});

describe('the stdio proxy', () => {
  it('lets a hook keep a tools/call from the server and answer it itself', async () => {
    const client = { input: new PassThrough(), output: new PassThrough() };
    const kept: unknown[] = [];
    const proxy = await startStdioProxy({
      command: ECHO[0]!,
      args: ECHO.slice(1),
      client,
      onLine(direction, line) {
        const message = line.message as { id?: number; method?: string };
        if (direction !== 'to-server' || message.method !== 'tools/call') return;
        kept.push(message);
        proxy.send('to-client', { jsonrpc: '2.0', id: message.id, result: { content: [], intercepted: true } });
        return 'keep';
      },
    });
    let received = '';
    client.output.on('data', (chunk: Buffer) => (received += chunk.toString()));
    client.input.write(
      '{"jsonrpc":"2.0","id":1,"method":"ping"}\n{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{}}\n',
    );
    client.input.end();
    expect(await proxy.exited).toBe(0);
    expect(kept).toHaveLength(1);
    // The echo server never saw the call: the only tools/call answer is the hook's.
    expect(received).toBe(
      '{"jsonrpc":"2.0","id":2,"result":{"content":[],"intercepted":true}}\n{"jsonrpc":"2.0","id":1,"method":"ping"}\n',
    );
  });
});
