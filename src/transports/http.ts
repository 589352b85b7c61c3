// MCP over Streamable HTTP at /mcp, for teams that run runledger as a shared service.
// Order of checks on every request: connection cap (503) → route → Host/Origin (403) → bearer token
// (401) → content type (415) → body size (413) and deadline (408) → JSON (parse error) → one message,
// not a batch (400) → session (400/404, or 429/503 past a cap) → the SDK transport. Every limit is
// listed in docs/deploy.md. Nothing a client sends can crash it. /viewer is the operators' run viewer
// (viewer.ts), behind the same connection cap, Host/Origin checks and tokens. /webhooks/<provider> takes
// job providers' webhooks (webhooks.ts): the connection cap and body limits, then their signature.
// This file holds the listener, the connection cap, the routes and shutdown; access.ts the Host, Origin
// and token checks, mcp-route.ts /mcp and its sessions, answers.ts how refusals are written.
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { UsageError } from '../command-line.js';
import type { HttpConfig } from '../config-sections.js';
import type { ServingConfig } from '../config.js';
import { asRunledgerError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Serving } from '../runtime.js';
import { createAccess, isLoopback } from './access.js';
import { clientGone, createTally, lastAnswer, refuse, rpcError, sendJson } from './answers.js';
import { createMcpRoute } from './mcp-route.js';
import { loadTokens, type TokenTable } from './tokens.js';
import { createViewer, isViewerPath } from './viewer.js';
import { createWebhookRoute, isWebhookPath } from './webhooks.js';

export interface HttpHandle {
  /** e.g. http://127.0.0.1:8787 */
  origin: string;
  /** Stop accepting, let in-flight requests finish (up to `graceMs`), release leases, close the ledger. */
  close(graceMs?: number): Promise<void>;
}

const DEFAULT_GRACE_MS = 10_000;

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
  const tally = createTally(log);
  const { allowed, authenticate } = createAccess({ http, tokens, port, defaultTenant });
  const mcp = createMcpRoute({ runtime, http, allowed, authenticate, count: tally.count });
  let inFlight = 0;
  let drained: (() => void) | undefined;
  let stopping = false;
  let connections = 0;
  /** Connections that arrived past the cap: their request is answered 503, and they are closed. */
  const overCap = new WeakSet<Socket>();

  const viewer = createViewer({ ledger: runtime.ledger, allowed, authenticate, log });
  const webhooks = createWebhookRoute({
    receive: runtime.receiveWebhook,
    http,
    answer: (res, status, body, last = false, headers = {}) =>
      sendJson(res, status, body, { ...headers, ...(last ? lastAnswer(res) : {}) }),
    count: tally.count,
    log,
  });

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
          await mcp.handle(req, res);
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
      mcp.stopIdleSweep();
      server.close();
      server.closeIdleConnections();
      if (inFlight > 0) {
        await new Promise<void>((resolve) => {
          drained = resolve;
          setTimeout(resolve, graceMs).unref();
        });
      }
      await mcp.closeSessions();
      server.closeAllConnections();
      tally.stop();
      await runtime.shutdown();
    },
  };
}
