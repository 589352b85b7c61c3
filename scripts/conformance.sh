#!/usr/bin/env bash
# Runs the official MCP conformance suite (@modelcontextprotocol/conformance) against runledger's
# Streamable HTTP transport: builds if needed, starts the server on a free loopback port with a
# throwaway ledger, runs the server scenarios that need none of the suite's fixture tools, prints a
# summary, stops the server. Exits non-zero if any chosen scenario has a FAILURE check.
#
#   npm run conformance                       # the default scenarios below
#   npm run conformance -- tools-list ping    # just these
#
# The suite needs Node 22; the pinned node@22 and conformance packages are installed from the npm
# registry into a cache directory (CONFORMANCE_CACHE, default ~/.cache/runledger) on first use.
# CONFORMANCE_KEEP=1 keeps the work directory (server log, each scenario's checks.json).
# Developer/CI tool only: not part of the package.
set -euo pipefail

CONFORMANCE_VERSION=0.1.16 # @modelcontextprotocol/conformance
NODE22_VERSION=22.23.3     # the npm package node@22, which carries the Node binary

# Scenarios that use only what runledger really serves. Everything else in `conformance list --server`
# calls the suite's fixture tools, prompts or resources (test_*, test://...), which runledger lacks.
DEFAULT_SCENARIOS=(
  server-initialize
  ping
  tools-list
  logging-set-level
  resources-list
  dns-rebinding-protection
  server-sse-multiple-streams
  server-sse-polling # "pending" in the suite; its resume step needs the fixture tool test_reconnection
)

cd "$(dirname "$0")/.."
root=$PWD
if [ "$#" -gt 0 ]; then scenarios=("$@"); else scenarios=("${DEFAULT_SCENARIOS[@]}"); fi

# --- build if needed --------------------------------------------------------------------------------
if [ ! -x node_modules/.bin/tsc ]; then
  echo "conformance: installing dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund >&2
fi
if [ ! -f dist/src/cli.js ] || [ -n "$(find src tools package.json tsconfig.json tsconfig.build.json -newer dist/src/cli.js -print -quit)" ]; then
  echo "conformance: building" >&2
  npm run --silent build >&2
fi

# --- the suite under Node 22 ------------------------------------------------------------------------
cache_root="${CONFORMANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runledger}"
suite_dir="$cache_root/conformance-$CONFORMANCE_VERSION-node-$NODE22_VERSION"
node22="$suite_dir/node_modules/node/bin/node"
suite_js="$suite_dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
if ! { [ -x "$node22" ] && [ -f "$suite_js" ] && "$node22" --version >/dev/null 2>&1; }; then
  echo "conformance: installing node@$NODE22_VERSION and @modelcontextprotocol/conformance@$CONFORMANCE_VERSION into $suite_dir" >&2
  mkdir -p "$cache_root"
  staging=$(mktemp -d "$cache_root/.install.XXXXXX")
  printf '{"name":"runledger-conformance-runner","private":true}\n' >"$staging/package.json"
  # node@22 fetches its platform binary package in a preinstall script, so scripts must run.
  (cd "$staging" && npm install --no-audit --no-fund --ignore-scripts=false \
    "node@$NODE22_VERSION" "@modelcontextprotocol/conformance@$CONFORMANCE_VERSION" >&2)
  rm -rf "$suite_dir"
  mv "$staging" "$suite_dir"
fi
if ! "$node22" --version >/dev/null 2>&1; then
  echo "conformance: $node22 does not run; remove $suite_dir and try again" >&2
  exit 2
fi
echo "conformance: suite $CONFORMANCE_VERSION under Node $("$node22" --version)" >&2

# --- the server -------------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/runledger-conformance.XXXXXX")
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "${CONFORMANCE_KEEP:-0}" = 1 ]; then echo "conformance: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# No tokens: on loopback runledger then serves the default tenant without auth, as the suite expects.
env -u RUNLEDGER_TOKENS node dist/src/cli.js --http --host 127.0.0.1 --port 0 --db "$work/ledger.db" \
  --log-level info 2>"$work/server.log" &
server_pid=$!

url=""
for _ in $(seq 1 150); do
  url=$(sed -n 's/.*serving MCP over Streamable HTTP {"url":"\([^"]*\)".*/\1/p' "$work/server.log" | head -n 1)
  [ -n "$url" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
  sleep 0.2
done
if [ -z "$url" ]; then
  echo "conformance: the server did not start; its log:" >&2
  cat "$work/server.log" >&2
  exit 2
fi
echo "conformance: server at $url (pid $server_pid)" >&2

# Seed one finished run so resources-list checks a real runs://… resource, not an empty list.
"$node22" --input-type=module - "$url" <<'EOF' >&2
const url = process.argv[2];
const base = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
async function rpc(body, headers = {}) {
  const res = await fetch(url, { method: 'POST', headers: { ...base, ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${body.method}: HTTP ${res.status} ${text}`);
  const msgs = text.split('\n').filter((l) => l.startsWith('data: ') && l.length > 6).map((l) => JSON.parse(l.slice(6)));
  return { res, reply: msgs.find((m) => m.id === body.id) ?? (text.startsWith('{') ? JSON.parse(text) : undefined) };
}
const version = '2025-11-25';
const init = await rpc({ jsonrpc: '2.0', id: 1, method: 'initialize',
  params: { protocolVersion: version, capabilities: {}, clientInfo: { name: 'runledger-conformance-seed', version: '1' } } });
const session = { 'mcp-session-id': init.res.headers.get('mcp-session-id'), 'mcp-protocol-version': version };
await rpc({ jsonrpc: '2.0', method: 'notifications/initialized' }, session);
const { reply } = await rpc({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'create_social_card',
  arguments: { headline: 'Conformance', idempotency_key: 'conformance-seed-0001', wait_seconds: 30 } } }, session);
const run = reply?.result?.structuredContent;
if (!run?.run_id || reply.result.isError) throw new Error(`seeding failed: ${JSON.stringify(reply)}`);
console.error(`conformance: seeded run ${run.run_id} (${run.phase})`);
await fetch(url, { method: 'DELETE', headers: session });
EOF

# --- the scenarios ----------------------------------------------------------------------------------
run_timeout=()
if command -v timeout >/dev/null; then run_timeout=(timeout 300); fi
for scenario in "${scenarios[@]}"; do
  echo
  echo "=== $scenario ==="
  mkdir -p "$work/results/$scenario"
  set +e
  "${run_timeout[@]}" "$node22" "$suite_js" server --url "$url" --scenario "$scenario" -o "$work/results/$scenario" \
    >"$work/results/$scenario/output.txt" 2>&1
  echo $? >"$work/results/$scenario/exit-code"
  set -e
  # The suite's own report, without the long scenario description it repeats after a failure.
  awk '/^=== Failed Checks ===/ { failed = 1 } !failed || /^  - |^    Error:/' "$work/results/$scenario/output.txt"
done

# --- summary ----------------------------------------------------------------------------------------
echo
echo "=== conformance summary (suite $CONFORMANCE_VERSION, $url) ==="
"$node22" - "$work/results" "${scenarios[@]}" <<'EOF'
const fs = require('node:fs');
const path = require('node:path');
const [dir, ...scenarios] = process.argv.slice(2);
let passed = 0;
let failed = 0;
for (const scenario of scenarios) {
  const sdir = path.join(dir, scenario);
  const exit = Number(fs.readFileSync(path.join(sdir, 'exit-code'), 'utf8').trim());
  const sub = fs.readdirSync(sdir).find((d) => fs.existsSync(path.join(sdir, d, 'checks.json')));
  if (!sub) {
    failed++;
    const out = fs.readFileSync(path.join(sdir, 'output.txt'), 'utf8').trim().split('\n').slice(-5).join('\n      ');
    console.log(`FAIL  ${scenario}: the suite produced no checks (exit ${exit})\n      ${out}`);
    continue;
  }
  const checks = JSON.parse(fs.readFileSync(path.join(sdir, sub, 'checks.json'), 'utf8'));
  const count = (s) => checks.filter((c) => c.status === s).length;
  const [ok, bad, warn] = [count('SUCCESS'), count('FAILURE'), count('WARNING')];
  const fail = bad > 0 || exit !== 0;
  if (fail) failed++;
  else passed++;
  console.log(`${fail ? 'FAIL' : 'PASS'}  ${scenario}: ${ok} passed, ${bad} failed, ${warn} warnings${exit !== 0 && bad === 0 ? ` (suite exit ${exit})` : ''}`);
  for (const c of checks.filter((c) => c.status === 'FAILURE' || c.status === 'WARNING')) {
    console.log(`      ${c.status} ${c.id}: ${c.errorMessage ?? c.description}`);
  }
}
console.log(`\nconformance: ${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 ? 1 : 0;
EOF
