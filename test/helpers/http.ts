// Test helpers: the built CLI serving Streamable HTTP on a loopback port, and the SDK's HTTP client.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CLI } from './mcp.js';

export interface HttpProcess {
  url: string;
  origin: string;
  child: ChildProcess;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  stderr: () => string;
}

const running: HttpProcess[] = [];

export async function startHttp(db: string, flags: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<HttpProcess> {
  const child = spawn(process.execPath, [CLI, '--http', '--port', '0', '--db', db, ...flags], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, ...env },
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let log = '';
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stderr! });
    lines.on('line', (line) => {
      log += line + '\n';
      const match = /serving MCP over Streamable HTTP \{"url":"([^"]+)"/.exec(line);
      if (match) resolve(match[1]!);
    });
    void exited.then((code) => reject(new Error(`server exited with ${code} before listening:\n${log}`)));
  });
  const server = { url, origin: new URL(url).origin, child, exited, stderr: () => log };
  running.push(server);
  return server;
}

/** SIGKILL whatever is still running; call from afterEach. */
export async function killAll(): Promise<void> {
  await Promise.all(
    running.splice(0).map(async (s) => {
      if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
      await s.exited;
    }),
  );
}

export async function connectHttp(url: string, token?: string): Promise<Client> {
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  const client = new Client({ name: 'runledger-http-test', version: '0' });
  await client.connect(transport);
  return client;
}

export interface SseEvent {
  id?: string;
  data: string;
}

/** Reads SSE events from a fetch response body, calling `onEvent` for each until it returns true. */
export async function readSse(response: Response, onEvent: (event: SseEvent) => boolean | void): Promise<void> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event: SseEvent = { data: '' };
      for (const line of block.split('\n')) {
        if (line.startsWith('id:')) event.id = line.slice(3).trim();
        else if (line.startsWith('data:')) event.data += line.slice(5).trim();
      }
      if (onEvent(event) === true) {
        await reader.cancel();
        return;
      }
    }
  }
}
