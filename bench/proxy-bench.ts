// runledger proxy over real stdio, beside the same calls made straight to its upstream, in one run:
// the upstream is the bare SDK server of the stdio benchmark, whose `noop` answers at once and whose
// `durable_insert` makes one durable SQLite commit. A replay through the proxy is compared with a
// direct no-op call. A fenced first call's baseline is a proxy that
// passes the JSON lines through untouched and makes one durable commit per call (raw-proxy.ts), the
// floor of any stdio proxy at all. For context, the same first call through the same proxy storing
// each answer before passing it back, and through a bare SDK proxy that commits once (bare-proxy.ts).
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { connect, median, interleavedRounds, quantile, side, type Comparison, type Side } from './measure.js';

const ROUNDS = 5;
const CALLS_PER_ROUND = 200;
const WARMUP_CALLS = 300;
const LIMIT = 1.3;
const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));
const BARE = fileURLToPath(new URL('./bare-server.js', import.meta.url));
const BARE_PROXY = fileURLToPath(new URL('./bare-proxy.js', import.meta.url));
const RAW_PROXY = fileURLToPath(new URL('./raw-proxy.js', import.meta.url));

async function call(client: Client, name: string, args: Record<string, unknown>): Promise<CallToolResult> {
  const result = (await client.callTool({ name, arguments: args })) as CallToolResult;
  if (result.isError) throw new Error(`bench: ${name} answered an error: ${JSON.stringify(result.content)}`);
  return result;
}

export async function benchProxy(): Promise<Comparison[]> {
  const dir = mkdtempSync(join(tmpdir(), 'runledger-bench-proxy-'));
  const clients: Client[] = [];
  try {
    const answers = join(dir, 'answers.json');
    writeFileSync(answers, '{}');
    const upstream = [BARE, join(dir, 'upstream.db'), answers];
    const direct = await connect(upstream);
    const proxy = await connect([
      CLI,
      'proxy',
      '--db',
      join(dir, 'ledger.db'),
      '--log-level',
      'warn',
      '--',
      process.execPath,
      ...upstream,
    ]);
    const bareProxy = await connect([BARE_PROXY, join(dir, 'bare-proxy.db'), ...upstream]);
    const rawProxy = await connect([RAW_PROXY, join(dir, 'raw-proxy.db'), ...upstream]);
    const storingProxy = await connect([RAW_PROXY, '--store-answers', join(dir, 'storing-proxy.db'), ...upstream]);
    clients.push(direct, proxy, bareProxy, rawProxy, storingProxy);
    const replayKey = randomUUID();
    await call(proxy, 'noop', { idempotency_key: replayKey });
    const sides = {
      directNoop: side(() => call(direct, 'noop', {})),
      directCommit: side(() => call(direct, 'durable_insert', {})),
      first: side(async () => {
        const result = await call(proxy, 'noop', { idempotency_key: randomUUID() });
        if (result._meta?.['io.runledger/replayed'] !== false)
          throw new Error('bench: a new key through the proxy was not a first call');
      }),
      bareProxyFirst: side(() => call(bareProxy, 'noop', { idempotency_key: randomUUID() })),
      rawProxyFirst: side(() => call(rawProxy, 'noop', { idempotency_key: randomUUID() })),
      storingProxyFirst: side(() => call(storingProxy, 'noop', { idempotency_key: randomUUID() })),
      replay: side(async () => {
        const result = await call(proxy, 'noop', { idempotency_key: replayKey });
        if (result._meta?.['io.runledger/replayed'] !== true)
          throw new Error('bench: a retry through the proxy was not a replay');
      }),
    };
    await interleavedRounds(Object.values(sides), {
      warmup: WARMUP_CALLS,
      rounds: ROUNDS,
      callsPerRound: CALLS_PER_ROUND,
    });
    const us = (n: number) => `${Math.round(n).toLocaleString('en-US')} µs`;
    const p50 = (s: Side) => median(s.samples);
    const times = (a: Side, b: Side) => `${(p50(a) / p50(b)).toFixed(2)}×`;
    const row = (
      operation: string,
      measured: Side,
      baselineLabel: string,
      baseline: Side,
      context = '',
    ): Comparison => ({
      operation,
      measured: median(measured.samples),
      baselineLabel,
      baseline: median(baseline.samples),
      ratio: median(baseline.samples) / median(measured.samples),
      target: 1 / LIMIT,
      unit: 'µs',
      lowerIsBetter: true,
      note: `${operation}: p90 ${us(quantile(measured.samples, 0.9))} against ${us(quantile(baseline.samples, 0.9))}.${context}`,
    });
    return [
      row(
        'fenced first call through the proxy, p50',
        sides.first,
        'line-forwarding proxy + one durable commit, p50',
        sides.rawProxyFirst,
        ` For context: the same line-forwarding proxy that also stores each answer (without an fsync) before passing it ` +
          `back takes ${us(p50(sides.storingProxyFirst))}, ${times(sides.storingProxyFirst, sides.rawProxyFirst)} the baseline ` +
          `(the floor of any proxy that keeps an answer its caller saw across a crash; runledger is ` +
          `${times(sides.first, sides.storingProxyFirst)} that); a bare SDK proxy that commits once takes ` +
          `${us(p50(sides.bareProxyFirst))}, ${times(sides.bareProxyFirst, sides.rawProxyFirst)} (the floor of any proxy built on ` +
          `the SDK); a direct call making one durable commit takes ${us(p50(sides.directCommit))}.`,
      ),
      row('replayed call through the proxy, p50', sides.replay, 'direct call, p50', sides.directNoop),
    ];
  } finally {
    await Promise.allSettled(clients.map((c) => c.close()));
    rmSync(dir, { recursive: true, force: true });
  }
}
