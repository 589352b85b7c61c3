// How the HTTP service answers: JSON bodies, JSON-RPC errors, refusals that make their connection's
// answer its last, and the tally that logs what clients cut short or were refused.
import type { ServerResponse } from 'node:http';
import type { Logger } from '../log.js';

/** How often the summary of client-side failures is logged, when there were any. */
const TALLY_EVERY_MS = 60_000;

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

export function rpcError(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  data?: object,
  headers?: Record<string, string>,
): void {
  sendJson(res, status, { jsonrpc: '2.0', id: null, error: { code, message, ...(data ? { data } : {}) } }, headers);
}

/** How long a refused request's connection may go on sending, after the answer, before it is cut. */
const LINGER_MS = 2000;

/**
 * Makes the answer to `res` its connection's last: kept alive, a connection whose request was refused
 * before its body would wait for the whole body first. Node destroys a "connection: close" socket as
 * soon as the answer is written, and a client still uploading then fails on EPIPE or a reset before it
 * reads the status; so this one half-closes instead, and drops what still arrives until the client
 * closes too, or for LINGER_MS at most.
 */
export function lastAnswer(res: ServerResponse): Record<string, string> {
  const socket = res.socket;
  if (socket !== null) {
    socket.destroySoon = () => {
      socket.end();
      const timer = setTimeout(() => socket.destroy(), LINGER_MS);
      timer.unref();
      socket.once('close', () => clearTimeout(timer));
    };
  }
  return { connection: 'close' };
}

/** Answers a request refused before its body was read (or while it still trickles in), and closes. */
export function refuse(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  data?: object,
  headers: Record<string, string> = {},
): void {
  rpcError(res, status, code, message, data, { ...headers, ...lastAnswer(res) });
}

/** Whether a request failed because its client went away mid-request (an aborted upload, a reset). */
export function clientGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE';
}

/**
 * Client-side failures and refusals, counted by kind and logged as one summary line a minute (and at
 * shutdown): one line per dropped upload would let any client fill the log.
 */
export function createTally(log: Logger) {
  const counts = new Map<string, number>();
  let since = Date.now();
  const flush = () => {
    if (counts.size > 0) {
      log.warn('HTTP requests refused or cut short by their clients', {
        ...Object.fromEntries(counts),
        seconds: Math.round((Date.now() - since) / 1000),
      });
    }
    counts.clear();
    since = Date.now();
  };
  const timer = setInterval(flush, TALLY_EVERY_MS);
  timer.unref();
  return {
    count: (kind: string) => void counts.set(kind, (counts.get(kind) ?? 0) + 1),
    stop() {
      clearInterval(timer);
      flush();
    },
  };
}
