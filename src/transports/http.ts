// MCP over Streamable HTTP at /mcp, for teams that run runledger as a shared service.
// Order of checks on every request: connection cap (503) → route → Host/Origin (403) → bearer token
// (401) → content type (415) → body size (413) and deadline (408) → JSON (parse error) → one message,
// not a batch (400) → session (400/404, or 429/503 past a cap) → the SDK transport. Every limit is
// listed in docs/deploy.md. Nothing a client sends can crash it. /viewer is the operators' run viewer
// (viewer.ts), behind the same connection cap, Host/Origin checks and tokens. /webhooks/<provider> takes
// job providers' webhooks (webhooks.ts): the connection cap and body limits, then their signature.
import { randomUUID } from 'node:crypto';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import {
  StreamableHTTPServerTransport,
  type EventId,
  type EventStore,
} from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { UsageError } from '../command-line.js';
import type { HttpConfig } from '../config-sections.js';
import type { ServingConfig } from '../config.js';
import { asRunledgerError } from '../errors.js';
import type { RunLedger } from '../ledger/index.js';
import type { Logger } from '../log.js';
import type { Serving } from '../runtime.js';
import { BodyTooLarge, BodyTooSlow, readBody } from './body.js';
import { refuseDeepMessages } from './guard.js';
import { SessionTable } from './sessions.js';
import { loadTokens, type TokenTable } from './tokens.js';
import { createViewer, isViewerPath } from './viewer.js';
import { createWebhookRoute, isWebhookPath } from './webhooks.js';

export interface HttpHandle {
  /** e.g. http://127.0.0.1:8787 */
  origin: string;
  /** Stop accepting, let in-flight requests finish (up to `graceMs`), release leases, close the ledger. */
  close(graceMs?: number): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);
const DEFAULT_GRACE_MS = 10_000;
/** How often the summary of client-side failures is logged, when there were any. */
const TALLY_EVERY_MS = 60_000;

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
    eventId.startsWith(PRIMING)
      ? eventId.slice(PRIMING.length)
      : ((await ledger.eventStreamOf(scope, eventId)) ?? undefined);
  return {
    storeEvent: async (streamId, message) =>
      Object.keys(message).length === 0
        ? `${PRIMING}${streamId}`
        : ledger.appendEvent(scope, streamId, JSON.stringify(message)),
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

function rpcError(
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
function lastAnswer(res: ServerResponse): Record<string, string> {
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
function refuse(
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
function clientGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE';
}

/**
 * Client-side failures and refusals, counted by kind and logged as one summary line a minute (and at
 * shutdown): one line per dropped upload would let any client fill the log.
 */
function createTally(log: Logger) {
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

export async function serveHttp<C extends ServingConfig>(
  config: C,
  http: HttpConfig,
  log: Logger,
  open: (config: C, log: Logger) => Promise<Serving>,
): Promise<HttpHandle> {
  const tokens = loadTokens(http.tokensFile, process.env.RUNLEDGER_TOKENS);
  if (tokens.size === 0 && !isLoopback(http.host)) {
    throw new UsageError(
      `refusing to serve on ${http.host} without tokens: anyone who can reach it could run and bill generations. ` +
        'Give --tokens FILE or RUNLEDGER_TOKENS, or bind to 127.0.0.1.',
    );
  }
  const runtime = await open(config, log);
  const server = createHttpServer({
    // Headers must arrive within the body deadline too; the handler times the body itself (with a
    // JSON-RPC answer), and Node's whole-request timeout only backs it up. Node checks both once a second.
    headersTimeout: http.bodyTimeoutMs,
    requestTimeout: 2 * http.bodyTimeoutMs,
    connectionsCheckingInterval: 1000,
  });
  server.keepAliveTimeout = 65_000; // longer than common load balancer idle timeouts
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new UsageError(`cannot listen on ${http.host}:${http.port}: ${err.message}`)));
    server.listen(http.port, http.host, resolve);
  });
  // Once listening, an error (say, out of file descriptors on accept) is logged, not fatal.
  server.on('error', (err) => log.error('HTTP server error', { error: err.message }));
  const port = (server.address() as AddressInfo).port;
  const handler = createHandler({ runtime, http, tokens, port, tenant: config.tenant, log });
  handler.countConnections(server);
  server.on('request', (req, res) => void handler.handle(req, res));
  runtime.start();
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
  const sessions = new SessionTable<StreamableHTTPServerTransport>({
    maxSessions: http.maxSessions,
    maxTenantSessions: http.maxTenantSessions,
    idleMs: http.sessionIdleMs,
  });
  const allowedHosts = new Set(
    [...LOOPBACK, http.host]
      .map((h) => `${h.includes(':') && !h.startsWith('[') ? `[${h}]` : h}:${port}`)
      .concat(http.allowedHosts),
  );
  const allowedOrigins = new Set(
    ['localhost', '127.0.0.1', '[::1]'].map((h) => `http://${h}:${port}`).concat(http.allowedOrigins),
  );
  const tally = createTally(log);
  let inFlight = 0;
  let drained: (() => void) | undefined;
  let stopping = false;
  let connections = 0;
  /** Connections that arrived past the cap: their request is answered 503, and they are closed. */
  const overCap = new WeakSet<Socket>();

  const idleSweep = setInterval(() => sessions.sweep(), Math.min(60_000, Math.ceil(http.sessionIdleMs / 4)));
  idleSweep.unref();

  /** The tenant for this request, or null after answering 401. */
  function authenticate(req: IncomingMessage, res: ServerResponse): string | null {
    if (tokens.size === 0) return defaultTenant;
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const tenant = match ? tokens.tenantFor(match[1]!) : null;
    if (tenant !== null) return tenant;
    const challenge = match ? 'Bearer realm="runledger", error="invalid_token"' : 'Bearer realm="runledger"';
    refuse(
      res,
      401,
      -32001,
      match ? 'unauthorized: the bearer token is not valid' : 'unauthorized: send Authorization: Bearer <token>',
      { code: 'unauthorized' },
      {
        'www-authenticate': challenge,
      },
    );
    return null;
  }

  async function openSession(tenant: string, req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    const place = sessions.reserve(tenant);
    if (!('fill' in place)) {
      tally.count(`sessions_over_${place.scope}_cap`);
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

  /** The Host and Origin checks (DNS rebinding, other sites' pages), for /mcp and the run viewer; false after a 403. */
  function allowed(req: IncomingMessage, res: ServerResponse): boolean {
    const host = req.headers.host ?? '';
    if (!allowedHosts.has(host)) {
      refuse(res, 403, -32000, `Forbidden: Host "${host}" is not allowed (add it with --allowed-hosts)`);
      return false;
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !allowedOrigins.has(origin)) {
      refuse(res, 403, -32000, `Forbidden: Origin "${origin}" is not allowed (add it with --allowed-origins)`);
      return false;
    }
    return true;
  }

  const viewer = createViewer({ ledger: runtime.ledger, allowed, authenticate, log });
  const webhooks = createWebhookRoute({
    receive: runtime.receiveWebhook,
    http,
    answer: (res, status, body, last = false, headers = {}) =>
      sendJson(res, status, body, { ...headers, ...(last ? lastAnswer(res) : {}) }),
    count: tally.count,
    log,
  });

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
          tally.count('body_timeout');
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

  async function health(res: ServerResponse): Promise<void> {
    try {
      await runtime.ledger.ping();
      sendJson(res, 200, { status: 'ok', ledger: 'reachable' });
    } catch (err) {
      sendJson(res, 503, { status: 'unavailable', ledger: asRunledgerError(err).message });
    }
  }

  return {
    countConnections(server: HttpServer): void {
      server.on('connection', (socket: Socket) => {
        if (++connections > http.maxConnections) overCap.add(socket);
        socket.once('close', () => connections--);
      });
      // Past twice the cap, Node closes new connections unanswered: even an answer costs a descriptor.
      server.maxConnections = 2 * http.maxConnections;
      server.on('drop', () => tally.count('connections_dropped'));
    },

    async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      // A request sent after a refused one, on its closing connection, is not for this server to answer.
      if (req.socket.writableEnded) {
        req.socket.destroy();
        return;
      }
      // A long-lived GET stream is not "in flight": it would hold shutdown for ever.
      const counted = req.method !== 'GET';
      if (counted) inFlight++;
      res.on('close', () => {
        if (counted && --inFlight === 0) drained?.();
      });
      if (stopping) res.setHeader('connection', 'close');
      try {
        const path = (req.url ?? '/').split('?')[0];
        if (overCap.has(req.socket)) {
          tally.count('connections_over_cap');
          refuse(
            res,
            503,
            -32000,
            `Service Unavailable: this server holds at most ${http.maxConnections} connections; retry shortly`,
            undefined,
            {
              'retry-after': '1',
            },
          );
        } else if (path === '/healthz') {
          if (req.method === 'GET' || req.method === 'HEAD') await health(res);
          else sendJson(res, 405, { error: 'use GET' }, { allow: 'GET', ...lastAnswer(res) });
        } else if (path === '/mcp') {
          await handleMcp(req, res);
        } else if (isViewerPath(path!)) {
          await viewer.handle(req, res, req.url ?? '/');
        } else if (isWebhookPath(path!)) {
          await webhooks(req, res, req.url ?? '/');
        } else {
          sendJson(res, 404, { error: `nothing at ${path}; MCP is served at /mcp` }, lastAnswer(res));
        }
      } catch (err) {
        if (clientGone(err)) {
          tally.count('aborted');
          return;
        }
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
      await sessions.closeAll();
      server.closeAllConnections();
      tally.stop();
      await runtime.shutdown();
    },
  };
}
