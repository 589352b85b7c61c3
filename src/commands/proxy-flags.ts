// Flags of `runledger proxy`: the upstream server it fronts, and the fence it puts around its tools.
import type { Flag } from './flag.js';

export const PROXY_FLAGS = {
  'upstream-url': {
    type: 'string',
    arg: 'URL',
    help: 'the upstream as a Streamable HTTP server, instead of a command after --',
  },
  'upstream-token': {
    type: 'string',
    arg: 'TOKEN',
    help: 'bearer token for --upstream-url',
    env: 'RUNLEDGER_UPSTREAM_TOKEN',
  },
  'upstream-timeout-ms': {
    type: 'string',
    arg: 'MS',
    help: 'longest silence of one upstream call',
    range: [1000, 3_600_000],
    default: 600_000,
  },
  'upstream-max': {
    type: 'string',
    arg: 'N',
    help:
      'most upstream sessions open at once, one per tenant: a stdio upstream is one process per tenant, started ' +
      'with RUNLEDGER_TENANT set and {tenant} in its command or URL filled in',
    range: [1, 1000],
    default: 16,
  },
  'upstream-idle-ms': {
    type: 'string',
    arg: 'MS',
    help: "over --http, close a tenant's upstream session after MS unused",
    range: [1000, 86_400_000],
    default: 600_000,
  },
  'upstream-per-session': {
    type: 'boolean',
    help: 'one upstream session per client session instead of per tenant (not with --stateless)',
  },
  fence: { type: 'string', arg: 'LIST', help: 'also fence these tools, though annotated read-only (comma-separated)' },
  pass: {
    type: 'string',
    arg: 'LIST',
    help: 'pass these tools through unfenced, though they are not read-only (comma-separated)',
  },
  'retry-errors': {
    type: 'boolean',
    help: 'let a key be tried again after an isError answer, instead of replaying it',
  },
  'wait-seconds': {
    type: 'string',
    arg: 'N',
    help: 'how long a retry waits for the first call, still in flight, before answering call_in_progress',
    range: [0, 300],
    default: 25,
  },
} as const satisfies Record<string, Flag>;
