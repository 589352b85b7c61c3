// MCP over Streamable HTTP at /mcp, for teams that run runledger as a shared service.
// Order of checks on every request: route → Host/Origin (403) → bearer token (401) → body size (413)
// → JSON (parse error) → session (400/404) → the SDK transport. Nothing a client sends can crash it.
// /viewer is the operators' run viewer (viewer.ts), behind the same Host/Origin checks and tokens.
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { StreamableHTTPServerTransport, type EventId, type EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { UsageError, type Config, type HttpConfig } from '../config.js';
import { asRunledgerError } from '../errors.js';
import type { RunLedger } from '../ledger/index.js';
import type { Logger } from '../log.js';
import { createRuntime, type Serving } from '../runtime.js';
import { loadTokens, type TokenTable } from './tokens.js';
import { createViewer, isViewerPath } from './viewer.js';

export interface HttpHandle {
  /** e.g. http://127.0.0.1:8787 */
  origin: string;
  /** Stop accepting, let in-flight requests finish (up to `graceMs`), release leases, close the ledger. */
  close(graceMs?: number): Promise<void>;
}

interface Session {
  transport: StreamableHTTPServerTransport;
  close(): Promise<void>;
  tenant: string;
  lastSeen: number;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);
const SESSION_IDLE_MS = 60 * 60 * 1000;
const DEFAULT_GRACE_MS = 10_000;

function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Events are stored under tenant and session together, so no tenant can resume another's stream. */
const eventScope = (tenant: string, sessionId: string) => `${tenant}/${sessionId}`;

/**
 * A priming event (sent first on every SSE stream, with no message) only hands the client an id to
 * resume from, so it is not stored: its id names the stream instead. That halves the event writes.
 */
const PRIMING = 'p:';

/** The transport's event store, kept in the ledger under one scope (a tenant's session). */
export function ledgerEventStore(ledger: RunLedger, scope: string): Required<EventStore> {
  const getStreamIdForEventId = async (eventId: EventId) =>
    eventId.startsWith(PRIMING) ? eventId.slice(PRIMING.length) : ((await ledger.eventStreamOf(scope, eventId)) ?? undefined);
  return {
    storeEvent: async (streamId, message) =>
      Object.keys(message).length === 0 ? `${PRIMING}${streamId}` : ledger.appendEvent(scope, streamId, JSON.stringify(message)),
    getStreamIdForEventId,
    async replayEventsAfter(lastEventId, { send }) {
      const streamId = await getStreamIdForEventId(lastEventId);
      if (streamId === undefined) return '';
      const after = lastEventId.startsWith(PRIMING) ? null : lastEventId;
      for (const event of await ledger.eventsAfter(scope, streamId, after)) {
        await send(event.id, JSON.parse(event.message) as JSONRPCMessage);
      }
      return streamId;
    },
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

function rpcError(res: ServerResponse, status: number, code: number, message: string, data?: object, headers?: Record<string, string>): void {
  sendJson(res, status, { jsonrpc: '2.0', id: null, error: { code, message, ...(data ? { data } : {}) } }, headers);
}

class BodyTooLarge extends Error {}

/**
 * A body past the limit is refused with 413 once the client has sent it all (read and dropped, up to
 * this bound): answering a client that is still uploading, and closing, resets the connection before
 * the client reads the status.
 */
const DRAIN_MAX_BYTES = 64 * 1024 * 1024;

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = Number(req.headers['content-length']) > limit;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      tooLarge ||= size > limit;
      if (!tooLarge) chunks.push(chunk);
      else if (size > DRAIN_MAX_BYTES) reject(new BodyTooLarge());
    });
    req.on('end', () => (tooLarge ? reject(new BodyTooLarge()) : resolve(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

export async function serveHttp(
  config: Config,
  http: HttpConfig,
  log: Logger,
  open: (config: Config, log: Logger) => Promise<Serving> = createRuntime,
): Promise<HttpHandle> {
  const tokens = loadTokens(http.tokensFile, process.env.RUNLEDGER_TOKENS);
  if (tokens.size === 0 && !isLoopback(http.host)) {
    throw new UsageError(
      `refusing to serve on ${http.host} without tokens: anyone who can reach it could run and bill generations. ` +
        'Give --tokens FILE or RUNLEDGER_TOKENS, or bind to 127.0.0.1.',
    );
  }
  const runtime = await open(config, log);
  const server = createHttpServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new UsageError(`cannot listen on ${http.host}:${http.port}: ${err.message}`)));
    server.listen(http.port, http.host, resolve);
  });
  const port = (server.address() as AddressInfo).port;
  const handler = createHandler({ runtime, http, tokens, port, tenant: config.tenant, log });
  server.on('request', (req, res) => void handler.handle(req, res));
  runtime.start();
  server.keepAliveTimeout = 65_000; // longer than common load balancer idle timeouts
  server.headersTimeout = 66_000;
  const origin = `http://${http.host.includes(':') ? `[${http.host}]` : http.host}:${port}`;
  log.info('serving MCP over Streamable HTTP', {
    url: `${origin}/mcp`,
    ...runtime.describe(),
    tenants: tokens.size === 0 ? [config.tenant] : 'by token',
    stateless: http.stateless,
  });
  return { origin, close: (graceMs = DEFAULT_GRACE_MS) => handler.shutdown(server, graceMs) };
}

interface HandlerDeps {
  runtime: Serving;
  http: HttpConfig;
  tokens: TokenTable;
  port: number;
  tenant: string;
  log: Logger;
}

function createHandler({ runtime, http, tokens, port, tenant: defaultTenant, log }: HandlerDeps) {
  const sessions = new Map<string, Session>();
  const allowedHosts = new Set(
    [...LOOPBACK, http.host].map((h) => `${h.includes(':') && !h.startsWith('[') ? `[${h}]` : h}:${port}`).concat(http.allowedHosts),
  );
  const allowedOrigins = new Set(
    ['localhost', '127.0.0.1', '[::1]'].map((h) => `http://${h}:${port}`).concat(http.allowedOrigins),
  );
  let inFlight = 0;
  let drained: (() => void) | undefined;
  let stopping = false;

  const idleSweep = setInterval(() => {
    const cutoff = Date.now() - SESSION_IDLE_MS;
    for (const [id, session] of sessions) if (session.lastSeen < cutoff) void session.close().then(() => sessions.delete(id));
  }, 60_000);
  idleSweep.unref();

  /** The tenant for this request, or null after answering 401. */
  function authenticate(req: IncomingMessage, res: ServerResponse): string | null {
    if (tokens.size === 0) return defaultTenant;
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const tenant = match ? tokens.tenantFor(match[1]!) : null;
    if (tenant !== null) return tenant;
    const challenge = match ? 'Bearer realm="runledger", error="invalid_token"' : 'Bearer realm="runledger"';
    rpcError(res, 401, -32001, match ? 'unauthorized: the bearer token is not valid' : 'unauthorized: send Authorization: Bearer <token>', { code: 'unauthorized' }, {
      'www-authenticate': challenge,
    });
    return null;
  }

  async function openSession(tenant: string): Promise<StreamableHTTPServerTransport> {
    const sessionId = randomUUID();
    const mcp = runtime.createMcpServer(() => tenant);
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => sessionId,
      eventStore: ledgerEventStore(runtime.ledger, eventScope(tenant, sessionId)),
      // Tells a disconnected client (protocol ≥ 2025-11-25) how soon to come back with Last-Event-ID.
      retryInterval: 1000,
      onsessioninitialized: (id) => {
        sessions.set(id, { transport, close: () => mcp.close(), tenant, lastSeen: Date.now() });
      },
    });
    transport.onclose = () => sessions.delete(sessionId);
    await mcp.server.connect(transport);
    return transport;
  }

  /** The Host and Origin checks (DNS rebinding, other sites' pages), for /mcp and the run viewer; false after a 403. */
  function allowed(req: IncomingMessage, res: ServerResponse): boolean {
    const host = req.headers.host ?? '';
    if (!allowedHosts.has(host)) {
      rpcError(res, 403, -32000, `Forbidden: Host "${host}" is not allowed (add it with --allowed-hosts)`);
      return false;
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !allowedOrigins.has(origin)) {
      rpcError(res, 403, -32000, `Forbidden: Origin "${origin}" is not allowed (add it with --allowed-origins)`);
      return false;
    }
    return true;
  }

  const viewer = createViewer({ ledger: runtime.ledger, allowed, authenticate, log });

  async function handleMcp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!allowed(req, res)) return;
    const tenant = authenticate(req, res);
    if (tenant === null) return;

    let body: unknown;
    if (req.method === 'POST') {
      let text: string;
      try {
        text = await readBody(req, http.maxBodyBytes);
      } catch (err) {
        if (err instanceof BodyTooLarge) {
          rpcError(res, 413, -32000, `Payload too large: the limit is ${http.maxBodyBytes} bytes`, undefined, { connection: 'close' });
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
    }

    if (http.stateless) {
      const mcp = runtime.createMcpServer(() => tenant);
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.on('close', () => void mcp.close());
      await mcp.server.connect(transport);
      await transport.handleRequest(req, res, body);
      return;
    }

    const sessionId = req.headers['mcp-session-id'];
    if (typeof sessionId === 'string') {
      const session = sessions.get(sessionId);
      const lastEventId = req.headers['last-event-id'];
      if (session === undefined && req.method === 'GET' && typeof lastEventId === 'string') {
        await replayAfterRestart(res, tenant, sessionId, lastEventId);
        return;
      }
      // Another tenant's session is reported exactly like an unknown one.
      if (session === undefined || session.tenant !== tenant) {
        rpcError(res, 404, -32001, 'Session not found: start a new session with initialize');
        return;
      }
      session.lastSeen = Date.now();
      await session.transport.handleRequest(req, res, body);
      return;
    }
    const initializing = req.method === 'POST' && (Array.isArray(body) ? body.some(isInitializeRequest) : isInitializeRequest(body));
    if (!initializing) {
      rpcError(res, 400, -32000, 'Bad Request: no Mcp-Session-Id header; send initialize first');
      return;
    }
    const transport = await openSession(tenant);
    await transport.handleRequest(req, res, body);
  }

  /**
   * A resume for a session this process does not hold: it was opened before a restart (or on another
   * replica). The stored events after Last-Event-ID are sent, then the stream ends; the session itself
   * is gone, so the client's next request gets 404 and it starts a new one, as the spec prescribes.
   */
  async function replayAfterRestart(res: ServerResponse, tenant: string, sessionId: string, lastEventId: string): Promise<void> {
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
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', 'mcp-session-id': sessionId });
    res.end(missed.join(''));
  }

  async function health(res: ServerResponse): Promise<void> {
    try {
      await runtime.ledger.ping();
      sendJson(res, 200, { status: 'ok', ledger: 'reachable' });
    } catch (err) {
      sendJson(res, 503, { status: 'unavailable', ledger: asRunledgerError(err).message });
    }
  }

  return {
    async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      // A long-lived GET stream is not "in flight": it would hold shutdown for ever.
      const counted = req.method !== 'GET';
      if (counted) inFlight++;
      res.on('close', () => {
        if (counted && --inFlight === 0) drained?.();
      });
      if (stopping) res.setHeader('connection', 'close');
      try {
        const path = (req.url ?? '/').split('?')[0];
        if (path === '/healthz') {
          if (req.method === 'GET' || req.method === 'HEAD') await health(res);
          else sendJson(res, 405, { error: 'use GET' }, { allow: 'GET' });
        } else if (path === '/mcp') {
          await handleMcp(req, res);
        } else if (isViewerPath(path!)) {
          await viewer.handle(req, res, req.url ?? '/');
        } else {
          sendJson(res, 404, { error: `nothing at ${path}; MCP is served at /mcp` });
        }
      } catch (err) {
        const e = asRunledgerError(err);
        log.error('HTTP request failed', { error: e.message, cause: String(e.cause) });
        rpcError(res, 500, -32603, 'Internal error');
      }
    },

    async shutdown(server: HttpServer, graceMs: number): Promise<void> {
      if (stopping) return;
      stopping = true;
      clearInterval(idleSweep);
      server.close();
      server.closeIdleConnections();
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          drained = resolve;
          setTimeout(resolve, graceMs).unref();
        });
      }
      await Promise.all([...sessions.values()].map((s) => s.close().catch(() => undefined)));
      sessions.clear();
      server.closeAllConnections();
      await runtime.shutdown();
    },
  };
}
