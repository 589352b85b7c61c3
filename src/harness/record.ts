// `runledger record --out FILE -- <server command...>`: sits between an MCP client and a server on
// stdio, forwards every byte unchanged, and writes each tools/call with its answer to a transcript.
// stdout belongs to the protocol, so everything this command says goes to stderr.
import { closeSync, openSync, writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { UsageError } from '../command-line.js';
import type { Logger } from '../log.js';
import { startStdioProxy, type Direction } from '../proxy/stdio-proxy.js';
import { VERSION } from '../version.js';
import type { RecordOptions } from './options.js';
import { isObject, type JsonObject } from './json.js';
import { createRedactor, redactCommand, TRANSCRIPT_VERSION, type CallLine, type TranscriptLine } from './transcript.js';

interface PendingCall {
  seq: number;
  at: string;
  startedAt: number;
  tool: string;
  arguments: JsonObject;
}

type RpcMessage = { id?: unknown; method?: unknown; params?: unknown; result?: unknown; error?: unknown };

/** JSON-RPC ids are strings or numbers, and 1 is not "1": the type is part of the key. */
const idKey = (id: unknown) => `${typeof id}:${String(id)}`;

export async function runRecord(options: RecordOptions, log: Logger): Promise<number> {
  let fd: number;
  try {
    fd = openSync(options.out, 'w');
  } catch (err) {
    throw new UsageError(`--out: cannot write ${options.out}: ${(err as Error).message}`);
  }
  const redact = createRedactor(options.redact);
  let writeFailed = false;
  const write = (line: TranscriptLine) => {
    try {
      writeSync(fd, JSON.stringify(redact(line)) + '\n');
    } catch (err) {
      // The client's session matters more than its recording: keep forwarding, say so once.
      if (!writeFailed)
        log.error('cannot write the transcript; the session goes on unrecorded', {
          file: options.out,
          error: (err as Error).message,
        });
      writeFailed = true;
    }
  };
  const now = () => new Date().toISOString();
  write({
    v: TRANSCRIPT_VERSION,
    type: 'session',
    at: now(),
    recorder: `runledger ${VERSION}`,
    command: redactCommand(options.command),
  });

  const pending = new Map<string, PendingCall>();
  const initializeIds = new Set<string>();
  let seq = 0;
  const finish = (call: PendingCall, outcome: CallLine['outcome'], answer: Pick<CallLine, 'result' | 'error'> = {}) => {
    const ms = Math.round((performance.now() - call.startedAt) * 10) / 10;
    write({
      v: TRANSCRIPT_VERSION,
      type: 'call',
      seq: call.seq,
      at: call.at,
      ms,
      tool: call.tool,
      arguments: call.arguments,
      outcome,
      ...answer,
    });
  };

  const observe = (direction: Direction, message: RpcMessage) => {
    if (direction === 'to-server') {
      if (message.method === 'initialize' && message.id !== undefined) initializeIds.add(idKey(message.id));
      if (message.method === 'tools/call' && message.id !== undefined && isObject(message.params)) {
        const params = message.params;
        pending.set(idKey(message.id), {
          seq: ++seq,
          at: now(),
          startedAt: performance.now(),
          tool: String(params.name),
          arguments: isObject(params.arguments) ? params.arguments : {},
        });
      }
      if (message.method === 'notifications/cancelled' && isObject(message.params)) {
        const key = idKey(message.params.requestId);
        const call = pending.get(key);
        if (call !== undefined) {
          pending.delete(key);
          finish(call, 'cancelled');
        }
      }
      return;
    }
    // Towards the client, only responses matter: they carry an id and no method.
    if (message.method !== undefined || message.id === undefined) return;
    const key = idKey(message.id);
    if (initializeIds.delete(key) && isObject(message.result)) {
      const info = isObject(message.result.serverInfo) ? message.result.serverInfo : {};
      write({
        v: TRANSCRIPT_VERSION,
        type: 'server',
        at: now(),
        name: String(info.name ?? ''),
        version: String(info.version ?? ''),
        protocol_version: String(message.result.protocolVersion ?? ''),
      });
    }
    const call = pending.get(key);
    if (call === undefined) return;
    pending.delete(key);
    if (isObject(message.result)) finish(call, 'answered', { result: message.result });
    else finish(call, 'error', { error: message.error as CallLine['error'] });
  };

  const [command, ...args] = options.command as [string, ...string[]];
  let proxy;
  try {
    proxy = await startStdioProxy({
      command,
      args,
      onLine(direction, line) {
        // A batch is an array of messages; a line that is not JSON is forwarded and not recorded.
        for (const message of Array.isArray(line.message) ? line.message : [line.message]) {
          if (isObject(message)) observe(direction, message);
        }
      },
    });
  } catch (err) {
    closeSync(fd);
    log.error(`cannot start the server: ${command}: ${(err as Error).message}`);
    return 127;
  }
  const forward = (signal: NodeJS.Signals) => () => proxy.child.kill(signal);
  process.on('SIGINT', forward('SIGINT'));
  process.on('SIGTERM', forward('SIGTERM'));
  const code = await proxy.exited;
  for (const call of pending.values()) finish(call, 'unanswered');
  closeSync(fd);
  // The session is over: stop reading from the client so this process can end.
  process.stdin.destroy();
  return code;
}
