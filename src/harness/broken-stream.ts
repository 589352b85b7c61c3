// The stream-broken fault: a tools/call sent as its own HTTP request, past the SDK client, so that
// its response stream can be cut the way a dropped connection cuts it.
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { rpcErrorAnswer, type Answer, type ToolResult } from './answers.js';
import type { Exchange } from './exchange.js';
import { isObject, type JsonObject } from './json.js';
import type { Target } from './target.js';

/** What of the session a broken call touches: the server's HTTP access, the progress count, how answers are read. */
export interface StreamSession {
  readonly target: Target;
  progressSeen: number;
  readAnswer(result: ToolResult): Answer;
}

/**
 * The call as its own HTTP request, whose response stream is cut on its first event or after
 * `breakAfterMs`, the way a dropped connection cuts it: the server hears no cancellation. A client
 * then re-issues the call as a new request with a new id (the 2026-07-28 transport's rule).
 */
export async function sendBroken(
  session: StreamSession,
  exchange: Exchange,
  token: string,
  requestId: string,
  args: JsonObject,
  breakAfterMs: number,
): Promise<void> {
  const http = session.target.http;
  if (http === undefined) throw new Error('stream-broken needs a server reached over HTTP');
  const controller = new AbortController();
  let broke: string | undefined;
  const breakNow = (why: string) => {
    broke ??= why;
    controller.abort();
  };
  const timer =
    breakAfterMs > 0
      ? setTimeout(() => breakNow(`${Math.round(breakAfterMs)} ms after it was sent`), breakAfterMs)
      : undefined;
  let response: JsonObject | undefined;
  try {
    const reply = await fetch(http.url, {
      method: 'POST',
      headers: {
        ...http.headers(),
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: requestId,
        method: 'tools/call',
        params: { name: exchange.tool, arguments: args, _meta: { progressToken: token } },
      }),
      signal: controller.signal,
    });
    if (!reply.ok) {
      exchange.status = 'failed';
      exchange.note = `HTTP ${reply.status} to the request whose stream was to break`;
      return;
    }
    // Nothing to aim by: break as soon as the server has taken the request and begun its answer.
    if (breakAfterMs <= 0) breakNow('as soon as its response began');
    if (!(reply.headers.get('content-type') ?? '').includes('text/event-stream')) {
      const body: unknown = await reply.json();
      if (isObject(body)) response = body;
    } else {
      const reader = reply.body!.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        for (let cut = buffer.search(/\r?\n\r?\n/); cut >= 0; cut = buffer.search(/\r?\n\r?\n/)) {
          const event = buffer.slice(0, cut);
          buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, '');
          const data = event
            .split(/\r?\n/)
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).trimStart())
            .join('\n');
          let message: unknown;
          try {
            message = data === '' ? undefined : JSON.parse(data);
          } catch {
            message = undefined;
          }
          if (!isObject(message)) continue;
          if (message.id === requestId) {
            response = message;
            breakNow('only after its whole answer had come');
          } else if (message.method === 'notifications/progress') {
            exchange.progress++;
            session.progressSeen++;
            breakNow('on its first progress notification');
          }
        }
        if (broke !== undefined) break;
      }
    }
  } catch (err) {
    if (broke === undefined) {
      exchange.status = 'failed';
      exchange.note = (err as Error).message;
      return;
    }
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
  if (response !== undefined && isObject(response.result)) {
    // The whole answer beat the break: evidence of what the server said, but never taken in.
    exchange.answer = session.readAnswer(response.result as CallToolResult);
    exchange.note = 'the whole answer came before the stream could break; dropped unread';
  } else if (response !== undefined && isObject(response.error)) {
    exchange.answer = rpcErrorAnswer(Number(response.error.code));
    exchange.note = 'a JSON-RPC error came before the stream could break; dropped unread';
  } else {
    exchange.status = 'interrupted';
    exchange.note = `response stream broken ${broke ?? 'when it ended'}; no notifications/cancelled`;
  }
}
