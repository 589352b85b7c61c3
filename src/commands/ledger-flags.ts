// Flags of the ledger: which ledger, whose runs in it and how much is logged (every command that opens
// the ledger takes these), and which runs `runledger runs list` shows.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_POOL_SIZE, MAX_PAGE_SIZE, PHASES } from '../ledger/index.js';
import type { Flag } from './flag.js';

/** Where the ledger lives unless told otherwise: the platform's per-user data directory. */
export function defaultDbPath(env: NodeJS.ProcessEnv = process.env, platform = process.platform): string {
  const home = homedir();
  let base: string;
  if (platform === 'win32') base = env.LOCALAPPDATA ?? join(home, 'AppData', 'Local');
  else if (platform === 'darwin') base = join(home, 'Library', 'Application Support');
  else base = env.XDG_DATA_HOME || join(home, '.local', 'share');
  return join(base, 'runledger', 'ledger.db');
}

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

export const LEDGER_FLAGS = {
  db: {
    type: 'string',
    arg: 'PATH|URL',
    help: 'the ledger: a SQLite file, or postgres://user:password@host:port/database for a ledger several replicas share',
    env: 'RUNLEDGER_DB',
    default: (env) => defaultDbPath(env),
  },
  'db-schema': {
    type: 'string',
    arg: 'NAME',
    help: 'PostgreSQL: the schema for the tables, unless the URL names one with ?schema=',
    env: 'RUNLEDGER_DB_SCHEMA',
    shown: 'runledger',
  },
  'db-pool-size': {
    type: 'string',
    arg: 'N',
    help: 'PostgreSQL: most connections this process opens for runs',
    env: 'RUNLEDGER_DB_POOL_SIZE',
    range: [1, 100],
    default: DEFAULT_POOL_SIZE,
  },
  tenant: {
    type: 'string',
    arg: 'NAME',
    help: 'the tenant whose runs this process serves',
    env: 'RUNLEDGER_TENANT',
    default: 'local',
  },
  'log-level': {
    type: 'string',
    arg: 'LEVEL',
    help: `${LOG_LEVELS.slice(0, -1).join(', ')} or ${LOG_LEVELS.at(-1)}; logs go to stderr, since stdout is the stdio protocol channel`,
    default: 'info',
  },
} as const satisfies Record<string, Flag>;

/** runledger runs list: which runs, and which page of them. */
export const RUNS_LIST_FLAGS = {
  tool: {
    type: 'string',
    arg: 'NAME',
    help: "only runs of this tool, as the ledger records it (product_shot, or a proxied tool's own name)",
  },
  phase: { type: 'string', arg: 'PHASE', help: `only runs in this phase: ${PHASES.join(', ')}` },
  limit: { type: 'string', arg: 'N', help: 'runs to show', range: [1, MAX_PAGE_SIZE], default: 50 },
  cursor: { type: 'string', arg: 'C', help: 'the next page, from the "More:" line the previous page printed' },
} as const satisfies Record<string, Flag>;
