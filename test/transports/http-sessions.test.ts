// The HTTP server in this process, so that the test can force a collection and read the heap: one
// tenant opening sessions past its cap is refused, another is not, and the heap stays bounded.
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { createRuntime } from '../../src/runtime.js';
import { serveHttp, type HttpHandle } from '../../src/transports/http.js';
import { connectHttp } from '../helpers/http.js';
import { callTool, tempDb } from '../helpers/mcp.js';

const ACME = 'acme-token-0123456789abcdef';
const GLOBEX = 'globex-token-0123456789abcdef';
const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
});

let handle: HttpHandle | undefined;
const clients: Client[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  await handle?.close(100);
  handle = undefined;
});

/** Sends initialize as `token`; answers the status and the Retry-After header. */
async function initialize(url: string, token: string): Promise<{ status: number; retryAfter: string | null }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      authorization: `Bearer ${token}`,
    },
    body: INIT,
  });
  await response.arrayBuffer();
  return { status: response.status, retryAfter: response.headers.get('retry-after') };
}

/** Heap in use after a full collection (vitest.config.ts starts workers with --expose-gc). */
function heapAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run with node --expose-gc');
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

describe('HTTP session limits', () => {
  it('refuses a tenant past its session cap with 429 while another opens sessions and calls tools, and the heap stays bounded', async () => {
    const db = tempDb();
    const tokens = `${db}.tokens`;
    writeFileSync(tokens, `acme ${ACME}\nglobex ${GLOBEX}\n`);
    const cap = 200;
    const config = parseConfig(
      [
        '--http',
        '--port',
        '0',
        '--db',
        db,
        '--concurrency',
        '0',
        '--tokens',
        tokens,
        '--max-tenant-sessions',
        String(cap),
      ],
      {},
    );
    if (config.command !== 'serve' || config.http === null) throw new Error('expected runledger serve --http');
    handle = await serveHttp(config, config.http, silentLogger, createRuntime);
    const url = `${handle.origin}/mcp`;
    const openMany = async (n: number) => {
      const statuses: { status: number; retryAfter: string | null }[] = [];
      for (let i = 0; i < n; i += 50)
        statuses.push(...(await Promise.all(Array.from({ length: Math.min(50, n - i) }, () => initialize(url, ACME)))));
      return statuses;
    };
    // Warm up every code path (and the fetch pool) before the first measurement.
    await openMany(20);
    const before = heapAfterGc();
    const opened = await openMany(cap - 20);
    expect(opened.every((s) => s.status === 200)).toBe(true);
    // The refusal's own code paths warmed up too: their first use compiles code that stays.
    expect((await openMany(5 * cap)).every((s) => s.status === 429)).toBe(true);
    const atCap = heapAfterGc();

    const refused = await openMany(10 * cap);
    expect(new Set(refused.map((s) => s.status))).toEqual(new Set([429]));
    expect(Number(refused[0]!.retryAfter)).toBeGreaterThanOrEqual(1);
    const afterRefusals = heapAfterGc();

    const globex = await connectHttp(url, GLOBEX);
    clients.push(globex);
    const created = await callTool(globex, 'create_social_card', {
      headline: 'Still served',
      idempotency_key: randomUUID(),
    });
    expect(created.result.isError).not.toBe(true);
    expect((await callTool(globex, 'poll_run', { run_id: created.run.run_id })).run.run_id).toBe(created.run.run_id);

    // 180 sessions cost what they cost; 2,000 refused ones must cost next to nothing.
    const perSession = (atCap - before) / (cap - 20);
    expect(perSession).toBeGreaterThan(0);
    expect(afterRefusals - atCap).toBeLessThan(0.05 * 10 * cap * perSession);
  });
});
