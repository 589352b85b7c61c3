// A stdio pass-through between an MCP client and an upstream MCP server it spawns. Every line travels
// on as the exact bytes that arrived, in order, in both directions; a hook sees each line on its way
// and may keep it back to answer or forward it itself. `record` observes with it; a proxy that
// intercepts tools/call builds on the same hook.
import { spawn, type ChildProcess } from 'node:child_process';
import { constants } from 'node:os';
import type { Readable, Writable } from 'node:stream';

export type Direction = 'to-server' | 'to-client';

export interface ProxiedLine {
  /** The line exactly as it arrived, without its "\n" (a final line may lack one). */
  readonly bytes: Buffer;
  /** The line as JSON (a JSON-RPC message or a batch), or undefined when it is not JSON. */
  readonly message: unknown;
}

export interface StdioProxyOptions {
  command: string;
  args: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** The client's side of the pipe; this process's stdin and stdout unless given. */
  client?: { input: Readable; output: Writable };
  /**
   * Sees every line before it is forwarded, synchronously so that order is kept. Returning "keep"
   * holds the line back: the hook then owns it, and may send something in its place with `send`.
   */
  onLine?(direction: Direction, line: ProxiedLine): 'keep' | void;
}

export interface StdioProxy {
  readonly child: ChildProcess;
  /** Writes one JSON-RPC message, as a line, towards the server or the client. */
  send(direction: Direction, message: unknown): void;
  /** The upstream's exit code once it has exited and its output is drained (128 + n for signal n). */
  readonly exited: Promise<number>;
}

/** Spawns the upstream and starts forwarding; rejects when it cannot be started (e.g. not found). */
export async function startStdioProxy(options: StdioProxyOptions): Promise<StdioProxy> {
  const client = options.client ?? { input: process.stdin, output: process.stdout };
  const child = spawn(options.command, [...options.args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: options.env ?? process.env,
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', reject);
  });
  const toServer = child.stdin!;
  const fromServer = child.stdout!;
  // A peer that has gone away must not take this process down with EPIPE; its exit is reported below.
  toServer.on('error', () => undefined);
  client.output.on('error', () => undefined);

  const outputs: Record<Direction, Writable> = { 'to-server': toServer, 'to-client': client.output };
  const send = (direction: Direction, message: unknown) => {
    outputs[direction].write(JSON.stringify(message) + '\n');
  };
  pipeLines(client.input, toServer, 'to-server', options.onLine);
  const drained = new Promise<void>((resolve) => fromServer.once('end', resolve));
  pipeLines(fromServer, client.output, 'to-client', options.onLine);
  client.input.once('end', () => toServer.end());

  const exited = new Promise<number>((resolve) => {
    child.once('exit', (code, signal) => {
      const status = code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0));
      void drained.then(() => resolve(status));
    });
  });
  return { child, send, exited };
}

const NEWLINE = 0x0a;

/** Forwards `input` to `output` line by line, unchanged, pausing the input while the output is full. */
function pipeLines(input: Readable, output: Writable, direction: Direction, onLine: StdioProxyOptions['onLine']): void {
  let partial: Buffer[] = [];
  const forward = (bytes: Buffer, line: Buffer) => {
    if (onLine?.(direction, { bytes: line, message: parseJson(line) }) === 'keep') return true;
    return output.write(bytes);
  };
  input.on('data', (chunk: Buffer) => {
    let start = 0;
    let writable = true;
    for (let end = chunk.indexOf(NEWLINE); end >= 0; end = chunk.indexOf(NEWLINE, start)) {
      const piece = chunk.subarray(start, end + 1);
      const bytes = partial.length === 0 ? piece : Buffer.concat([...partial, piece]);
      partial = [];
      writable = forward(bytes, bytes.subarray(0, bytes.length - 1)) && writable;
      start = end + 1;
    }
    if (start < chunk.length) partial.push(chunk.subarray(start));
    if (!writable) {
      input.pause();
      output.once('drain', () => input.resume());
    }
  });
  input.once('end', () => {
    if (partial.length === 0) return;
    const rest = Buffer.concat(partial);
    forward(rest, rest);
  });
}

function parseJson(line: Buffer): unknown {
  try {
    return JSON.parse(line.toString('utf8'));
  } catch {
    return undefined;
  }
}
