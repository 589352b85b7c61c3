// Test helpers: the built CLI over real stdio with the SDK's client, and typed views of tool results.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { getDefaultEnvironment, StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { openSqliteLedger } from '../../src/ledger/sqlite/store.js';
import type { RunLedger } from '../../src/ledger/index.js';
import type { RunView } from '../../src/mcp/views.js';

export const CLI = fileURLToPath(new URL('../../dist/src/cli.js', import.meta.url));

export function tempDb(): string {
  return join(mkdtempSync(join(tmpdir(), 'runledger-e2e-')), 'ledger.db');
}

export interface StdioServer {
  client: Client;
  transport: StdioClientTransport;
  pid: number;
  /** What the server wrote to stderr so far (empty unless started with captureStderr). */
  stderr(): string;
  close(): Promise<void>;
}

export async function startStdio(
  db: string,
  flags: string[] = [],
  opts: { env?: Record<string, string>; captureStderr?: boolean } = {},
): Promise<StdioServer> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, '--db', db, '--log-level', 'warn', ...flags],
    stderr: opts.captureStderr ? 'pipe' : 'inherit',
    // The SDK passes a child only a few safe variables unless told otherwise.
    ...(opts.env === undefined ? {} : { env: { ...getDefaultEnvironment(), ...opts.env } }),
  });
  let stderr = '';
  transport.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const client = new Client({ name: 'runledger-test', version: '0.0.0' });
  await client.connect(transport);
  return { client, transport, pid: transport.pid!, stderr: () => stderr, close: () => client.close() };
}

export interface ToolAnswer {
  result: CallToolResult;
  run: RunView;
  error: { code: string; message: string; details: Record<string, unknown> } | undefined;
}

export async function callTool(
  client: Client,
  name: string,
  args: Record<string, unknown>,
  options?: Parameters<Client['callTool']>[2],
): Promise<ToolAnswer> {
  const result = (await client.callTool({ name, arguments: args }, undefined, options)) as CallToolResult;
  const data = (result.structuredContent ?? {}) as Record<string, unknown>;
  return { result, run: data as unknown as RunView, error: data.error as ToolAnswer['error'] };
}

/** Waits until `check` returns a value (not undefined), trying again as soon as the last try settles. */
export async function until<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Follows a run through poll_run until it has ended (done, failed or canceled); its last answer. */
export const runEnded = (client: Client, runId: string): Promise<ToolAnswer> =>
  until(
    async () => {
      const polled = await callTool(client, 'poll_run', { run_id: runId, wait_seconds: 50 });
      return ['done', 'failed', 'canceled'].includes(polled.run.phase) ? polled : undefined;
    },
    `run ${runId} to end`,
    120_000,
  );

/** Opens the ledger file a server uses, reads it, and closes it again. */
export async function readLedger<T>(db: string, read: (ledger: RunLedger) => Promise<T>): Promise<T> {
  const ledger = await openSqliteLedger({ path: db });
  try {
    return await read(ledger);
  } finally {
    await ledger.close();
  }
}

export const PRODUCT_SHOT = {
  brief: 'A glass bottle of cold brew on a concrete ledge',
  product_name: 'Cold Brew No. 7',
  variants: 2,
  style: 'studio',
};
