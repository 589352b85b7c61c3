// The help of `runledger record` and `runledger replay`: each its own, so that `record --help` says
// what record takes rather than everything runledger does. No imports: --help answers at once.

export const RECORD_USAGE = `runledger record — sit between an MCP client and a stdio server, and write each tools/call to a transcript

Usage:
  runledger record --out FILE [--redact REGEX]... -- <server command...>
  runledger record --schema          print the JSON Schema of a transcript line

Point your MCP client at "runledger record --out session.jsonl -- <your server command>" instead of
the server itself. Every byte passes through unchanged; stdout stays the protocol channel, and what
record has to say goes to stderr. It exits with the server's exit code.

Options:
  --out FILE              the transcript to write, one JSON object a line (format: record --schema)
  --redact REGEX          also redact what this matches (repeatable); bearer tokens and the values of
                          environment variables named like secrets (TOKEN, SECRET, KEY, ...) always are,
                          and so are the values of secret-looking flags in the server command
  --schema                print the transcript's JSON Schema and exit
  -h, --help              this help

Then: runledger replay FILE (runledger replay --help).
`;

export const REPLAY_USAGE = `runledger replay — replay a recorded session against an MCP server with faults, and check that retries are safe

Usage:
  runledger replay FILE [options]
  runledger replay --report-schema   print the JSON Schema of the report (--report FILE)
  runledger replay --profile-schema  print the JSON Schema of a target profile (--profile FILE)

Each recorded call is sent again under a fault — duplicated, in a burst, timed out, cancelled, its
answer lost, its arguments changed under the same key, its HTTP response stream broken, the server
SIGKILLed between or inside calls — and the invariants are judged: one run per key, the same answer,
one charge per run, no acknowledged run lost, every run terminal within the bound, a changed-argument
retry refused and creating nothing, no progress notification after its call's answer.
Progress goes to stderr, the verdict table to stdout.

Exit codes: 0 nothing broke; 1 an invariant broke; 2 bad input; 3 the replay could not run (the server
would not start, or died on its own); 4 with --require-all, nothing broke but something went unchecked.

The server:
  --server "COMMAND"      launch this server (default: the command the transcript was recorded from):
                          over stdio, or with --url, reached at that URL once it serves there
  --url URL               a Streamable HTTP server; alone, one already running (no SIGKILL faults)
  --token TOKEN           bearer token for --url (env RUNLEDGER_TOKEN)

Faults:
  --faults LIST           all, or some of: duplicate, burst, timeout, lost-answer, changed-args,
                          cancel, stream-broken (needs --url), kill-between, kill-mid-run (need a
                          server replay launches) (default: all that apply)
  --seed N                0–4294967295; the same seed sends the same calls with the same faults (default: random)
  --settle-ms MS          how long every run may take to end after the faults (default: 120000)
  --burst N               concurrent copies of a call in a burst, 2–64 (default: 8)

The server's conventions (see docs/harness.md; anything not given is detected from tools/list):
  --profile NAME|FILE     auto (default), runledger, proxy, or a JSON profile file (--profile-schema)
  --key-argument NAME     the argument that carries the idempotency key
  --run-id-field FIELD    where an answer names its run: a dot path ("job.id"), or "_meta.NAME" for
                          an entry of the result's _meta (repeatable, tried in order)
  --status-field FIELD    where an answer gives its run's status
  --done-words LIST       status words of a run that ended well and is billed (comma-separated)
  --failed-words LIST     status words of a run that ended otherwise
  --poll-tool NAME        a read-only tool that answers for one run ...
  --poll-argument NAME    ... the argument it takes the run id in ...
  --poll-wait-argument NAME  ... and the one, in seconds, that makes it wait for the run to end
  --usage-tool NAME       a read-only tool that counts runs and charges ...
  --usage-runs FIELD      ... the field that counts runs ...
  --usage-charges FIELD   ... and the field that counts charges
  --run-resource TEMPLATE a resource URI template that shows one run ("runs://{run_id}")

The verdict:
  --require-all           exit 4 unless every invariant was checked; the report names what was missing
                          and the flag or profile field that supplies it
  --report FILE           write the whole report, every call included, as JSON (--report-schema)
  -h, --help              this help
`;
