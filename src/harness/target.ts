// The server under replay: one the harness launches over stdio (and may SIGKILL and start again), or
// one already serving Streamable HTTP at a URL.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { VERSION } from '../version.js';
import type { ReplayTarget } from './options.js';

/** The replay cannot go on (the server would not start, or died on its own): exit 3, not a verdict. */
export class ReplayAborted extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReplayAborted';
  }
}

export interface Target {
  /** How the server is reached, for the report. */
  readonly label: string;
  readonly canRestart: boolean;
  /** The connected client; a new one after each restart. */
  readonly client: Client;
  /** Set once a launched server has exited without being told to; the replay stops there. */
  readonly failure: string | undefined;
  /** SIGKILL, then start it again on the same command and connect. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

const STDERR_LINES_KEPT = 20;

function newClient(): Client {
  const client = new Client({ name: 'runledger-replay', version: VERSION });
  // Answers to requests the harness aborted on purpose arrive late and are reported here: expected.
  client.onerror = () => undefined;
  return client;
}

export async function connectTarget(target: ReplayTarget): Promise<Target> {
  return target.kind === 'url' ? connectUrl(target.url, target.token) : launch(target.command);
}

async function connectUrl(url: URL, token: string | undefined): Promise<Target> {
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` };
  const client = newClient();
  try {
    await client.connect(new StreamableHTTPClientTransport(url, { requestInit: { headers } }));
  } catch (err) {
    throw new ReplayAborted(`cannot connect to ${url.href}: ${(err as Error).message}`);
  }
  return {
    label: `Streamable HTTP ${url.href}`,
    canRestart: false,
    client,
    failure: undefined,
    restart: () => Promise.reject(new ReplayAborted('a server at --url cannot be restarted by replay')),
    close: () => client.close(),
  };
}

async function launch(command: string[]): Promise<Target> {
  const [program, ...args] = command as [string, ...string[]];
  const env = Object.fromEntries(Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined));
  let stderr: string[] = [];
  let client = newClient();
  let transport: StdioClientTransport;
  let failure: string | undefined;
  let expectingExit = false;
  let exited: Promise<void> = Promise.resolve();
  const lastWords = () => (stderr.length === 0 ? '' : `; its last stderr lines:\n${stderr.join('\n')}`);

  const start = async () => {
    stderr = [];
    client = newClient();
    transport = new StdioClientTransport({ command: program, args, env, stderr: 'pipe' });
    // Server logs would tear the progress bar apart; the last lines are kept for when it dies.
    transport.stderr?.on('data', (chunk: Buffer) => {
      stderr.push(...chunk.toString('utf8').split('\n').filter((line) => line.trim() !== ''));
      stderr = stderr.slice(-STDERR_LINES_KEPT);
    });
    exited = new Promise<void>((resolve) => {
      client.onclose = () => {
        if (!expectingExit) failure ??= `the server exited on its own${lastWords()}`;
        resolve();
      };
    });
    try {
      await client.connect(transport);
    } catch (err) {
      throw new ReplayAborted(`cannot start the server "${command.join(' ')}": ${(err as Error).message}${lastWords()}`);
    }
  };
  await start();
  return {
    label: `stdio ${command.join(' ')}`,
    canRestart: true,
    get client() {
      return client;
    },
    get failure() {
      return failure;
    },
    async restart() {
      expectingExit = true;
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
