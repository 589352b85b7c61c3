// Flags of the harness: `runledger record` writes a transcript, `runledger replay` sends it again under
// faults and judges the invariants. src/harness/options.ts reads them.
import { MAX_SEED } from '../prng.js';
import type { Flag } from './flag.js';

export const RECORD_FLAGS = {
  out: {
    type: 'string',
    arg: 'FILE',
    help: 'the transcript to write, one JSON object a line (format: record --schema)',
  },
  redact: {
    type: 'string',
    multiple: true,
    arg: 'REGEX',
    help:
      'also redact what this matches (repeatable); bearer tokens and the values of environment variables named ' +
      'like secrets (TOKEN, SECRET, KEY, ...) always are, and so are the values of secret-looking flags in the server command',
  },
  schema: { type: 'boolean', help: "print the transcript's JSON Schema and exit" },
} as const satisfies Record<string, Flag>;

/** How a server names its runs, their status and its bill: what replay otherwise detects from tools/list. */
export const CONVENTION_FLAGS = {
  'key-argument': { type: 'string', arg: 'NAME', help: 'the argument that carries the idempotency key' },
  'run-id-field': {
    type: 'string',
    multiple: true,
    arg: 'FIELD',
    help: 'where an answer names its run: a dot path ("job.id"), or "_meta.NAME" for an entry of the result\'s _meta (repeatable, tried in order)',
  },
  'status-field': { type: 'string', arg: 'FIELD', help: "where an answer gives its run's status" },
  'done-words': {
    type: 'string',
    arg: 'LIST',
    help: 'status words of a run that ended well and is billed (comma-separated)',
  },
  'failed-words': { type: 'string', arg: 'LIST', help: 'status words of a run that ended otherwise' },
  'poll-tool': { type: 'string', arg: 'NAME', help: 'a read-only tool that answers for one run ...' },
  'poll-argument': { type: 'string', arg: 'NAME', help: '... the argument it takes the run id in ...' },
  'poll-wait-argument': {
    type: 'string',
    arg: 'NAME',
    help: '... and the one, in seconds, that makes it wait for the run to end',
  },
  'usage-tool': { type: 'string', arg: 'NAME', help: 'a read-only tool that counts runs and charges ...' },
  'usage-runs': { type: 'string', arg: 'FIELD', help: '... the field that counts runs ...' },
  'usage-charges': { type: 'string', arg: 'FIELD', help: '... and the field that counts charges' },
  'run-resource': {
    type: 'string',
    arg: 'TEMPLATE',
    help: 'a resource URI template that shows one run ("runs://{run_id}")',
  },
} as const satisfies Record<string, Flag>;

export const REPLAY_FLAGS = {
  // runledger replay: the server
  server: {
    type: 'string',
    arg: '"COMMAND"',
    help: 'launch this server: over stdio, or with --url, reached at that URL once it serves there',
    shown: 'the command the transcript was recorded from',
  },
  url: { type: 'string', arg: 'URL', help: 'a Streamable HTTP server; alone, one already running (no SIGKILL faults)' },
  token: { type: 'string', arg: 'TOKEN', help: 'bearer token for --url', env: 'RUNLEDGER_TOKEN' },
  // runledger replay: the faults
  faults: {
    type: 'string',
    arg: 'LIST',
    help:
      'all, or some of: duplicate, burst, timeout, lost-answer, changed-args, cancel, stream-broken, kill-between, ' +
      'kill-mid-run; stream-broken needs --url, and the two kills need a server that replay launches',
    shown: 'all that apply',
  },
  seed: {
    type: 'string',
    arg: 'N',
    help: 'the same seed sends the same calls with the same faults',
    range: [0, MAX_SEED],
    shown: 'random',
  },
  'settle-ms': {
    type: 'string',
    arg: 'MS',
    help: 'how long every run may take to end after the faults',
    range: [1000, 3_600_000],
    default: 120_000,
  },
  burst: { type: 'string', arg: 'N', help: 'concurrent copies of a call in a burst', range: [2, 64], default: 8 },
  // runledger replay: the server's conventions
  profile: {
    type: 'string',
    arg: 'NAME|FILE',
    help: 'auto, runledger, proxy, or a JSON profile file (--profile-schema)',
    default: 'auto',
  },
  ...CONVENTION_FLAGS,
  // runledger replay: the verdict
  'require-all': {
    type: 'boolean',
    help: 'exit 4 unless every invariant was checked; the report names what was missing and the flag or profile field that supplies it',
  },
  report: {
    type: 'string',
    arg: 'FILE',
    help: 'write the whole report, every call included, as JSON (--report-schema)',
  },
  'report-schema': { type: 'boolean', help: "print the report's JSON Schema and exit" },
  'profile-schema': { type: 'boolean', help: "print a target profile's JSON Schema and exit" },
} as const satisfies Record<string, Flag>;
