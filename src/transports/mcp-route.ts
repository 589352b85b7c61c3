// /mcp, the MCP endpoint. After the connection cap (http.ts) and Host/Origin and token (access.ts),
// its checks run in the order http.ts lists. Its sessions live in a SessionTable, capped per tenant and
// in all and closed once idle, and the events of their streams are kept in the ledger (event-store.ts).
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import type { HttpConfig } from '../config-sections.js';
import type { Serving } from '../runtime.js';
import type { Access } from './access.js';
import { refuse, rpcError } from './answers.js';
import { BodyTooLarge, BodyTooSlow, readBody } from './body.js';
import { eventScope, ledgerEventStore, PRIMING } from './event-store.js';
import { refuseDeepMessages } from './guard.js';
import { SessionTable } from './sessions.js';

export interface McpRouteDeps extends Access {
  runtime: Serving;
  http: HttpConfig;
  /** Counts a refusal in the tally of client-side failures (answers.ts). */
  count(kind: string): void;
}

export function createMcpRoute({ runtime, http, allowed, authenticate, count }: McpRouteDeps) {
  const sessions = new SessionTable<StreamableHTTPServerTransport>({
    maxSessions: http.maxSessions,
    maxTenantSessions: http.maxTenantSessions,
    idleMs: http.sessionIdleMs,
  });

  const idleSweep = setInterval(() => sessions.sweep(), Math.min(60_000, Math.ceil(http.sessionIdleMs / 4)));
  idleSweep.unref();

  async function openSession(tenant: string, req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    const place = sessions.reserve(tenant);
    if (!('fill' in place)) {
      count(`sessions_over_${place.scope}_cap`);
      const [status, limit] =
        place.scope === 'tenant'
          ? [429, `${http.maxTenantSessions} sessions per tenant`]
          : [503, `${http.maxSessions} sessions`];
      rpcError(
        res,
        status,
        -32000,
        `Too many sessions: this server holds at most ${limit}; end sessions you no longer use (DELETE), or retry later`,
        undefined,
        {
          'retry-after': String(place.retryAfterSeconds),
        },
      );
      return;
    }
    const sessionId = randomUUID();
    const mcp = runtime.createMcpServer(tenant);
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => sessionId,
      eventStore: ledgerEventStore(runtime.ledger, eventScope(tenant, sessionId)),
      // Tells a disconnected client (protocol ≥ 2025-11-25) how soon to come back with Last-Event-ID.
      retryInterval: 1000,
      onsessioninitialized: (id) => place.fill(id, transport, () => mcp.close()),
    });
    transport.onclose = () => sessions.remove(sessionId);
    try {
      await mcp.server.connect(transport);
      refuseDeepMessages(transport);
      await transport.handleRequest(req, res, body);
    } finally {
      // An initialize the transport refused never became a session: its place is given back.
      if (place.release()) void mcp.close();
    }
  }

  async function handleMcp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!allowed(req, res)) return;
    const tenant = authenticate(req, res);
    if (tenant === null) return;

    let body: unknown;
    if (req.method === 'POST') {
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/json') {
        refuse(res, 415, -32000, 'Unsupported Media Type: Content-Type must be application/json');
        return;
      }
      let text: string;
      try {
        text = await readBody(req, http.maxBodyBytes, http.bodyTimeoutMs);
      } catch (err) {
        if (err instanceof BodyTooLarge) {
          refuse(res, 413, -32000, `Payload too large: the limit is ${http.maxBodyBytes} bytes`);
          return;
        }
        if (err instanceof BodyTooSlow) {
          count('body_timeout');
          refuse(res, 408, -32000, `Request Timeout: the body must arrive within ${http.bodyTimeoutMs} ms`);
          return;
        }
        throw err;
      }
      try {
        body = JSON.parse(text);
      } catch (err) {
        rpcError(res, 400, -32700, `Parse error: ${(err as Error).message}`);
        return;
      }
      // Since protocol revision 2025-06-18 a POST carries one message. Refused for every revision, so
      // that nothing in a batch runs: a batch of creates would bypass what one call at a time is allowed.
      if (Array.isArray(body)) {
        rpcError(res, 400, -32600, 'Invalid Request: batches are not supported; send one JSON-RPC message per POST');
        return;
      }
    }

    if (http.stateless) {
      const mcp = runtime.createMcpServer(tenant);
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.on('close', () => void mcp.close());
      await mcp.server.connect(transport);
      refuseDeepMessages(transport);
      await transport.handleRequest(req, res, body);
      return;
    }

    const sessionId = req.headers['mcp-session-id'];
    if (typeof sessionId === 'string') {
      // Another tenant's session is reported exactly like an unknown one.
      const session = sessions.get(sessionId, tenant);
      const lastEventId = req.headers['last-event-id'];
      if (session === undefined && req.method === 'GET' && typeof lastEventId === 'string') {
        await replayAfterRestart(res, tenant, sessionId, lastEventId);
        return;
      }
      if (session === undefined) {
        rpcError(res, 404, -32001, 'Session not found: start a new session with initialize');
        return;
      }
      // Busy while this request (or stream) lasts: a session is idle only with nothing open.
      res.once('close', sessions.begin(sessionId));
      await session.handleRequest(req, res, body);
      return;
    }
    if (req.method !== 'POST' || !isInitializeRequest(body)) {
      rpcError(res, 400, -32000, 'Bad Request: no Mcp-Session-Id header; send initialize first');
      return;
    }
    await openSession(tenant, req, res, body);
  }

  /**
   * A resume for a session this process does not hold: it was opened before a restart (or on another
   * replica). The stored events after Last-Event-ID are sent, then the stream ends; the session itself
   * is gone, so the client's next request gets 404 and it starts a new one, as the spec prescribes.
   */
  async function replayAfterRestart(
    res: ServerResponse,
    tenant: string,
    sessionId: string,
    lastEventId: string,
  ): Promise<void> {
    const store = ledgerEventStore(runtime.ledger, eventScope(tenant, sessionId));
    const missed: string[] = [];
    const streamId = await store.replayEventsAfter(lastEventId, {
      send: async (id, message) => void missed.push(`event: message\nid: ${id}\ndata: ${JSON.stringify(message)}\n\n`),
    });
    // An id this scope never stored (another tenant's, or made up) finds no stream: as unknown a session.
    if (streamId === '' || (missed.length === 0 && lastEventId.startsWith(PRIMING))) {
      rpcError(res, 404, -32001, 'Session not found: start a new session with initialize');
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache, no-transform',
      'mcp-session-id': sessionId,
    });
    res.end(missed.join(''));
  }

  return {
    handle: handleMcp,
    /** Shutdown stops expiring idle sessions first, and closes them all once requests in flight are done. */
    stopIdleSweep: () => clearInterval(idleSweep),
    closeSessions: () => sessions.closeAll(),
  };
}
