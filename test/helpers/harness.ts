// Test helpers for record and replay: a client session recorded through `runledger record`, and the
// replay command run as a user runs it, with its JSON report read back.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { Report } from '../../src/harness/report.js';
import { CLI } from './mcp.js';

export const TOY_SERVER = fileURLToPath(new URL('../fixtures/toy-ledger-server.mjs', import.meta.url));
export const TRANSCRIPTS = fileURLToPath(new URL('../fixtures/transcripts/', import.meta.url));

export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'runledger-harness-'));
}

/** The toy server's command line, with its state in a fresh file. */
export function toyServer(flags: string[] = []): string[] {
  return [process.execPath, TOY_SERVER, '--state', join(tempDir(), 'state.json'), ...flags];
}

/** Connects an SDK client to `server` through `runledger record`, runs `session`, and closes. */
export async function recordSession(
  out: string,
  server: string[],
  session: (client: Client) => Promise<void>,
): Promise<void> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [CLI, 'record', '--out', out, '--', ...server],
    stderr: 'inherit',
  });
  const client = new Client({ name: 'runledger-record-test', version: '0' });
  await client.connect(transport);
  try {
    await session(client);
  } finally {
    await client.close();
  }
}

export interface ReplayRun {
  code: number | null;
  stdout: string;
  stderr: string;
  report: Report | undefined;
}

/** `runledger replay` in a child process, as a user runs it; the report is read when one was written. */
export async function replay(transcript: string, args: string[]): Promise<ReplayRun> {
  const reportFile = join(tempDir(), 'report.json');
  const child = spawn(process.execPath, [CLI, 'replay', transcript, '--report', reportFile, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
  let report: Report | undefined;
  try {
    report = JSON.parse(readFileSync(reportFile, 'utf8')) as Report;
  } catch {
    report = undefined;
  }
  return { code, stdout, stderr, report };
}

export const statusOf = (report: Report | undefined, id: string) => report?.invariants.find((i) => i.id === id)?.status;

export const FIXTURE_SERVERS = fileURLToPath(new URL('../fixtures/servers/', import.meta.url));

/** A fixture server's command line (test/fixtures/servers/NAME.mjs), with its state in a fresh file. */
export function fixtureServer(name: string, flags: string[] = []): string[] {
  return [process.execPath, join(FIXTURE_SERVERS, `${name}.mjs`), '--state', join(tempDir(), 'state.json'), ...flags];
}

/** A command line as one --server argument. */
export const quote = (command: string[]) => command.map((part) => `'${part}'`).join(' ');

/** A free TCP port on 127.0.0.1, for a server replay launches and reaches over HTTP. */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
