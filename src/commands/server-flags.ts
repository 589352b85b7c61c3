// Flags of a serving process (serve, and proxy for the lease and HTTP): how much work it takes on, and
// Streamable HTTP with the limits that keep one client from exhausting it.
import { DEFAULT_CONCURRENCY } from '../engine/defaults.js';
import { DEFAULT_LEASE_MS } from '../ledger/index.js';
import type { Flag } from './flag.js';

/** The work: runs rendered at once, and how long a worker holds one. */
export const WORK_FLAGS = {
  concurrency: {
    type: 'string',
    arg: 'N',
    help: 'runs rendered at once; 0 serves only, leaving rendering to another runledger process on the same ledger',
    range: [0, 32],
    default: DEFAULT_CONCURRENCY,
  },
  'phase-delay-ms': {
    type: 'string',
    arg: 'MS',
    help: 'slow every phase by MS, to watch the phase stream',
    range: [0, 600_000],
    default: 0,
  },
  'lease-ms': {
    type: 'string',
    arg: 'MS',
    help: "worker lease; a dead worker's run is resumed after it",
    range: [1000, 3_600_000],
    default: DEFAULT_LEASE_MS,
  },
} as const satisfies Record<string, Flag>;

export const HTTP_FLAGS = {
  http: {
    type: 'boolean',
    help: 'serve MCP over Streamable HTTP at /mcp (and GET /healthz, /viewer) instead of stdio',
  },
  host: {
    type: 'string',
    arg: 'HOST',
    help: 'address to bind; another than loopback needs tokens',
    default: '127.0.0.1',
  },
  port: { type: 'string', arg: 'PORT', help: 'port; 0 picks a free one', range: [0, 65535], default: 8787 },
  stateless: { type: 'boolean', help: 'no sessions: every request stands alone (for load-balanced replicas)' },
  tokens: {
    type: 'string',
    arg: 'FILE',
    help: 'bearer tokens, one "TENANT TOKEN" pair a line, # comments (or RUNLEDGER_TOKENS=TENANT:TOKEN,TENANT:TOKEN in the environment)',
  },
  'max-body-bytes': {
    type: 'string',
    arg: 'N',
    help: 'largest request body',
    range: [1024, 64 * 1024 * 1024],
    default: 1024 * 1024,
  },
  'body-timeout-ms': {
    type: 'string',
    arg: 'MS',
    help: "a request's headers, then its body, must each arrive within MS, or it is answered 408 and its connection closed",
    range: [1000, 600_000],
    default: 20_000,
  },
  'max-connections': {
    type: 'string',
    arg: 'N',
    help: 'open connections; past it a request is answered 503 with Retry-After',
    range: [1, 1_000_000],
    default: 10_000,
  },
  'max-sessions': {
    type: 'string',
    arg: 'N',
    help: 'sessions this process holds, all tenants together; past it initialize is answered 503 with Retry-After',
    range: [1, 1_000_000],
    default: 5000,
  },
  'max-tenant-sessions': {
    type: 'string',
    arg: 'N',
    help: 'sessions one tenant holds; past it initialize is answered 429 with Retry-After',
    range: [1, 1_000_000],
    default: 1000,
  },
  'session-idle-ms': {
    type: 'string',
    arg: 'MS',
    help: 'a session with no request or stream open for MS is closed',
    range: [1000, 86_400_000],
    default: 30 * 60_000,
  },
  'allowed-hosts': {
    type: 'string',
    arg: 'LIST',
    help: 'more Host header values to accept, comma-separated (e.g. mcp.example.com)',
  },
  'allowed-origins': { type: 'string', arg: 'LIST', help: 'more Origin values to accept, comma-separated' },
} as const satisfies Record<string, Flag>;
