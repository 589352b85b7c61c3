// The server under replay: one the harness launches over stdio, one it launches and reaches over
// Streamable HTTP (either may be SIGKILLed and started again), or one already serving at a URL.
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { VERSION } from '../version.js';
import type { ReplayTarget } from './options.js';

/** The replay cannot go on (the server would not start, or died on its own): exit 3, not a verdict. */
export class ReplayAborted extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReplayAborted';
  }
}

/** Sees every message on the wire, in the order it travels, before the client acts on it. */
export interface WireListener {
  sent(message: JSONRPCMessage): void;
  received(message: JSONRPCMessage): void;
}

/** What a request sent outside the client needs, for a server reached over HTTP. */
export interface HttpAccess {
  url: URL;
  /** The session id and protocol version the client negotiated, and the bearer token. */
  headers(): Record<string, string>;
}

export interface Target {
  /** How the server is reached, for the report. */
  readonly label: string;
  readonly canRestart: boolean;
  /** The connected client; a new one after each restart. */
  readonly client: Client;
  /** Set for a server reached over HTTP. */
  readonly http: HttpAccess | undefined;
  /** Counts restarts; raised before the SIGKILL, so a call that spans one can tell. */
  readonly generation: number;
  /** Set once a launched server has exited without being told to; the replay stops there. */
  readonly failure: string | undefined;
  listen(listener: WireListener): void;
  /** SIGKILL, then start it again on the same command and connect. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

const STDERR_LINES_KEPT = 20;
/** How long a launched HTTP server may take to answer at its URL. */
const HTTP_START_TIMEOUT_MS = 30_000;

function newClient(): Client {
  const client = new Client({ name: 'runledger-replay', version: VERSION });
  // Answers to requests the harness gave up on, and progress for tokens the SDK never issued (the
  // harness sets its own), arrive as "unknown" here: expected, and watched on the wire instead.
  client.onerror = () => undefined;
  return client;
}

/** Puts the listeners on a connected transport's way in and out. */
function tap(transport: Transport, listeners: readonly WireListener[]): void {
  const receive = transport.onmessage;
  transport.onmessage = (message, extra) => {
    for (const listener of listeners) listener.received(message);
    receive?.call(transport, message, extra);
  };
  const send = transport.send.bind(transport);
  transport.send = (message, options) => {
    for (const listener of listeners) listener.sent(message);
    return send(message, options);
  };
}

export async function connectTarget(target: ReplayTarget): Promise<Target> {
  if (target.kind === 'url') return connectUrl(target.url, target.token);
  return target.url === undefined ? launchStdio(target.command) : launchHttp(target.command, target.url, target.token);
}

const authHeaders = (token: string | undefined): Record<string, string> =>
  token === undefined ? {} : { authorization: `Bearer ${token}` };

function httpAccess(url: URL, token: string | undefined, transport: () => StreamableHTTPClientTransport): HttpAccess {
  return {
    url,
    headers() {
      const { sessionId, protocolVersion } = transport();
      return {
        ...authHeaders(token),
        ...(sessionId === undefined ? {} : { 'mcp-session-id': sessionId }),
        ...(protocolVersion === undefined ? {} : { 'mcp-protocol-version': protocolVersion }),
      };
    },
  };
}

async function connectHttp(
  url: URL,
  token: string | undefined,
  listeners: readonly WireListener[],
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = newClient();
  const transport = new StreamableHTTPClientTransport(url, { requestInit: { headers: authHeaders(token) } });
  await client.connect(transport);
  tap(transport, listeners);
  return { client, transport };
}

async function connectUrl(url: URL, token: string | undefined): Promise<Target> {
  const listeners: WireListener[] = [];
  let connected: Awaited<ReturnType<typeof connectHttp>>;
  try {
    connected = await connectHttp(url, token, listeners);
  } catch (err) {
    throw new ReplayAborted(`cannot connect to ${url.href}: ${(err as Error).message}`);
  }
  return {
    label: `Streamable HTTP ${url.href}`,
    canRestart: false,
    client: connected.client,
    http: httpAccess(url, token, () => connected.transport),
    generation: 0,
    failure: undefined,
    listen: (listener) => listeners.push(listener),
    restart: () => Promise.reject(new ReplayAborted('a server at --url cannot be restarted by replay')),
    close: () => connected.client.close(),
  };
}

const processEnv = () =>
  Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined));

/** The last lines a server wrote to stderr, kept for when it dies. */
function stderrKeeper() {
  let lines: string[] = [];
  return {
    reset: () => (lines = []),
    take: (chunk: Buffer) => {
      lines.push(
        ...chunk
          .toString('utf8')
          .split('\n')
          .filter((line) => line.trim() !== ''),
      );
      lines = lines.slice(-STDERR_LINES_KEPT);
    },
    lastWords: () => (lines.length === 0 ? '' : `; its last stderr lines:\n${lines.join('\n')}`),
  };
}

async function launchStdio(command: string[]): Promise<Target> {
  const [program, ...args] = command as [string, ...string[]];
  const env = processEnv();
  const stderr = stderrKeeper();
  const listeners: WireListener[] = [];
  let client = newClient();
  let transport: StdioClientTransport;
  let failure: string | undefined;
  let expectingExit = false;
  let generation = 0;
  let exited: Promise<void> = Promise.resolve();

  const start = async () => {
    stderr.reset();
    client = newClient();
    transport = new StdioClientTransport({ command: program, args, env, stderr: 'pipe' });
    // Server logs would tear the progress bar apart; the last lines are kept for when it dies.
    transport.stderr?.on('data', stderr.take);
    exited = new Promise<void>((resolve) => {
      client.onclose = () => {
        if (!expectingExit) failure ??= `the server exited on its own${stderr.lastWords()}`;
        resolve();
      };
    });
    try {
      await client.connect(transport);
    } catch (err) {
      throw new ReplayAborted(
        `cannot start the server "${command.join(' ')}": ${(err as Error).message}${stderr.lastWords()}`,
      );
    }
    tap(transport, listeners);
  };
  await start();
  return {
    label: `stdio ${command.join(' ')}`,
    canRestart: true,
    get client() {
      return client;
    },
    http: undefined,
    get generation() {
      return generation;
    },
    get failure() {
      return failure;
    },
    listen: (listener) => listeners.push(listener),
    async restart() {
      expectingExit = true;
      generation++;
      const pid = transport.pid;
      try {
        if (pid !== null) process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone on its own: `failure` says so, and the replay stops after this case.
      }
      await exited;
      expectingExit = false;
      await start();
    },
    async close() {
      expectingExit = true;
      await client.close();
    },
  };
}

/** A server the harness launches, then reaches at a URL it serves: the HTTP faults and the SIGKILL ones together. */
async function launchHttp(command: string[], url: URL, token: string | undefined): Promise<Target> {
  const [program, ...args] = command as [string, ...string[]];
  const env = processEnv();
  const stderr = stderrKeeper();
  const listeners: WireListener[] = [];
  let child: ChildProcess;
  let connected: Awaited<ReturnType<typeof connectHttp>> | undefined;
  let failure: string | undefined;
  let expectingExit = false;
  let generation = 0;
  let exited: Promise<void> = Promise.resolve();
  const describe = `"${command.join(' ')}"`;

  const start = async () => {
    stderr.reset();
    let spawnError: Error | undefined;
    child = spawn(program, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.on('data', stderr.take);
    const running = child;
    exited = new Promise<void>((resolve) => {
      // A command that cannot be spawned says so with an error, and no exit.
      running.once('error', (err) => {
        spawnError = err;
        resolve();
      });
      running.once('exit', (code, signal) => {
        if (!expectingExit)
          failure ??= `the server exited on its own (${signal ?? `code ${code}`})${stderr.lastWords()}`;
        resolve();
      });
    });
    const deadline = Date.now() + HTTP_START_TIMEOUT_MS;
    for (;;) {
      if (spawnError !== undefined)
        throw new ReplayAborted(`cannot start the server ${describe}: ${spawnError.message}`);
      if (running.exitCode !== null || running.signalCode !== null)
        throw new ReplayAborted(
          `cannot start the server ${describe}: it exited before answering at ${url.href}${stderr.lastWords()}`,
        );
      try {
        connected = await connectHttp(url, token, listeners);
        return;
      } catch (err) {
        if (Date.now() > deadline)
          throw new ReplayAborted(
            `the server ${describe} did not answer at ${url.href} within ${HTTP_START_TIMEOUT_MS / 1000} s: ${(err as Error).message}${stderr.lastWords()}`,
          );
        await sleep(25);
      }
    }
  };
  const alive = () => child.exitCode === null && child.signalCode === null;
  const kill = async () => {
    expectingExit = true;
    if (alive()) child.kill('SIGKILL');
    await exited;
    // Only now: closing first would end the in-flight requests more gently than a crash does.
    await connected?.client.close().catch(() => undefined);
  };
  try {
    await start();
  } catch (err) {
    await kill();
    throw err;
  }
  return {
    label: `Streamable HTTP ${url.href}, launched as ${command.join(' ')}`,
    canRestart: true,
    get client() {
      return connected!.client;
    },
    http: httpAccess(url, token, () => connected!.transport),
    get generation() {
      return generation;
    },
    get failure() {
      return failure;
    },
    listen: (listener) => listeners.push(listener),
    async restart() {
      generation++;
      await kill();
      expectingExit = false;
      await start();
    },
    async close() {
      expectingExit = true;
      await connected?.client.close().catch(() => undefined);
      if (alive()) child.kill('SIGTERM');
      // A server that does not stop on SIGTERM is not left behind.
      const stopped = await Promise.race([exited.then(() => true), sleep(3000).then(() => false)]);
      if (!stopped) await kill();
    },
  };
}
