// The SQLite ledger in process, each number beside a baseline measured in the same run:
// - a fresh create against one raw durable insert, a replay against one raw indexed point lookup;
// - a replay in a ledger of 1M runs against the same replay in a ledger of 1k runs (bulk-filled);
// - the bytes a finished run takes in the file, beyond its images.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { catalogue } from '../tools/index.js';
import { Engine } from '../src/engine/engine.js';
import { fingerprint, type CreateRequest, type JsonObject } from '../src/ledger/index.js';
import type { Ledger } from '../src/ledger/ledger.js';
import { openSqliteLedger } from '../src/ledger/sqlite/store.js';
import { RunService } from '../src/runs.js';
import { alternatingRates, BENCH_REQUEST, median, opsPerSecond, type Comparison } from './measure.js';

const ROUNDS = 5;
const WRITES_PER_ROUND = 400;
const READS_PER_ROUND = 40_000;
const LARGE_LEDGER = 1_000_000;
const SMALL_LEDGER = 1_000;
/** Keys replayed from the large ledger beyond its working set: more than any cache holds, spread over the whole file. */
const COLD_SAMPLE = 50_000;
const FINISHED_RUNS = 200;
const MAX_BYTES_PER_RUN = 2048;

const productShot = catalogue.find((t) => t.name === 'product_shot')!;
/** A product_shot request after schema defaults (brand kit included), as the MCP surface sends it. */
const ARGS = productShot.input.parse(BENCH_REQUEST) as JsonObject;
const request = (key: string): CreateRequest => ({
  tenant: 'bench',
  tool: 'product_shot',
  idempotencyKey: key,
  args: ARGS,
  cost: 8,
});

function rawDatabase(path: string): Database.Database {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  return db;
}

/** A ledger's pages holding everything but image bytes, ÷ finished runs: what a run costs the file. */
function bytesBesideImages(path: string): number {
  const db = new Database(path);
  try {
    db.pragma('wal_checkpoint(TRUNCATE)');
    return db
      .prepare<[], number>(`SELECT sum(pgsize) FROM dbstat WHERE name NOT IN ('assets', 'sqlite_autoindex_assets_1')`)
      .pluck()
      .get()!;
  } finally {
    db.close();
  }
}

/**
 * Fills a ledger file with `count` finished runs shaped like real ones (random UUID keys, the same
 * arguments, a real stored result, a charge) in one transaction, and returns a random sample of keys.
 */
async function bulkFill(path: string, count: number, sample: number, storedResult: Buffer): Promise<string[]> {
  await (await openSqliteLedger({ path })).close();
  const db = new Database(path);
  try {
    db.pragma('synchronous = OFF');
    const fp = fingerprint(ARGS);
    const start = Date.now() - 3600_000;
    db.transaction(() => {
      db.prepare(
        `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
         INSERT INTO runs (id, tenant, executor, tool, idem_key, fingerprint, cost, args, phase, progress, composing_at, rendering_at,
           ended_at, attempts, created_at, updated_at)
         SELECT 'run_fill' || i, 'bench', 'engine', 'product_shot', lower(hex(randomblob(16))), ?, 8, ?, 'done', 1,
           ? + i, ? + i, ? + i, 1, ? + i, ? + i FROM n`,
      ).run(count, fp, JSON.stringify(ARGS), start, start, start, start, start);
      db.prepare(`INSERT INTO run_data (run_id, result) SELECT id, ? FROM runs`).run(storedResult);
      db.prepare(
        `INSERT INTO charges (run_id, tenant, tool, credits, provider, created_at) SELECT id, tenant, tool, cost, 'builtin', created_at FROM runs`,
      ).run();
    })();
    return db.prepare<[number], string>(`SELECT idem_key FROM runs ORDER BY random() LIMIT ?`).pluck().all(sample);
  } finally {
    db.close();
  }
}

/** Replays per second over `keys`, each key in turn. */
async function replayRate(ledger: Ledger, keys: string[], count: number): Promise<number> {
  return opsPerSecond(count, async (i) => {
    const outcome = await ledger.createOrReplay(request(keys[i % keys.length]!));
    if (outcome.kind !== 'replayed') throw new Error(`bench: expected a replay, got ${outcome.kind}`);
  });
}

async function finishedRunBytes(dir: string): Promise<{ perRun: number; imageBytes: number; storedResult: Buffer }> {
  const path = join(dir, 'finished.db');
  const ledger = await openSqliteLedger({ path });
  const engine = new Engine({ ledger, tools: catalogue, concurrency: 2 });
  const runs = new RunService(ledger);
  const empty = bytesBesideImages(path);
  try {
    const created = [];
    for (let i = 0; i < FINISHED_RUNS; i++) {
      const args = productShot.input.parse({
        ...BENCH_REQUEST,
        variants: 1,
        product_name: `Mug no. ${i}`,
      }) as JsonObject;
      created.push(await ledger.createOrReplay({ ...request(randomUUID()), args }));
    }
    engine.start();
    for (const outcome of created) {
      if (outcome.kind !== 'created') throw new Error(`bench: expected a new run, got ${outcome.kind}`);
      const { run } = await runs.follow('bench', outcome.run, { waitSeconds: 50 });
      if (run.phase !== 'done') throw new Error(`bench: run ${run.id} ended ${run.phase}`);
    }
  } finally {
    await engine.stop();
    runs.close();
    await ledger.close();
  }
  const db = new Database(path, { readonly: true });
  const imageBytes = db.prepare<[], number>(`SELECT sum(size) FROM assets`).pluck().get()! / FINISHED_RUNS;
  const storedResult = db
    .prepare<[], Buffer>(`SELECT result FROM run_data WHERE result IS NOT NULL LIMIT 1`)
    .pluck()
    .get()!;
  db.close();
  return { perRun: (bytesBesideImages(path) - empty) / FINISHED_RUNS, imageBytes, storedResult };
}

export async function benchLedger(): Promise<Comparison[]> {
  const dir = mkdtempSync(join(tmpdir(), 'runledger-bench-'));
  try {
    const raw = rawDatabase(join(dir, 'raw.db'));
    raw.exec('CREATE TABLE t (k TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, args TEXT NOT NULL)');
    const rawInsert = raw.prepare('INSERT INTO t (k, fingerprint, args) VALUES (?, ?, ?)');
    const rawLookup = raw.prepare('SELECT * FROM t WHERE k = ?');
    const argsText = JSON.stringify(ARGS);
    const fp = fingerprint(ARGS);
    const ledger = await openSqliteLedger({ path: join(dir, 'ledger.db') });

    const rates = {
      rawInsert: [] as number[],
      create: [] as number[],
      rawLookup: [] as number[],
      replay: [] as number[],
    };
    const create = (key: string) => ledger.createOrReplay({ ...request(key), fingerprint: fp });
    for (let round = 0; round < ROUNDS; round++) {
      // One operation of each side in turn, so that a checkpoint or a slow flush falls on both alike. UUID keys, as agents send.
      const keys = Array.from({ length: WRITES_PER_ROUND }, () => randomUUID());
      const [rawInserts, creates] = await alternatingRates(WRITES_PER_ROUND, [
        async (i) => rawInsert.run(keys[i], fp, argsText),
        (i) => create(keys[i]!),
      ]);
      const [rawLookups, replays] = await alternatingRates(READS_PER_ROUND, [
        async (i) => rawLookup.get(keys[i % keys.length]),
        (i) => create(keys[i % keys.length]!),
      ]);
      rates.rawInsert.push(rawInserts!);
      rates.create.push(creates!);
      rates.rawLookup.push(rawLookups!);
      rates.replay.push(replays!);
    }
    raw.close();
    await ledger.close();

    process.stderr.write(`  rendering ${FINISHED_RUNS} runs to weigh them ...\n`);
    const finished = await finishedRunBytes(dir);

    process.stderr.write(
      `  filling ledgers of ${SMALL_LEDGER.toLocaleString('en-US')} and ${LARGE_LEDGER.toLocaleString('en-US')} runs ...\n`,
    );
    const smallKeys = await bulkFill(join(dir, 'small.db'), SMALL_LEDGER, SMALL_LEDGER, finished.storedResult);
    const coldKeys = await bulkFill(join(dir, 'large.db'), LARGE_LEDGER, COLD_SAMPLE, finished.storedResult);
    // The same number of distinct keys on both sides, drawn at random from the whole ledger: what
    // differs is only the size of what they are found in.
    const largeKeys = coldKeys.slice(0, SMALL_LEDGER);
    const small = await openSqliteLedger({ path: join(dir, 'small.db') });
    const large = await openSqliteLedger({ path: join(dir, 'large.db') });
    const scale = { small: [] as number[], large: [] as number[], cold: [] as number[] };
    // One pass first, so every side starts from a warm OS page cache, as a running server would.
    for (const [ledger, keys] of [
      [large, coldKeys],
      [small, smallKeys],
    ] as const)
      await replayRate(ledger, keys, keys.length);
    for (let round = 0; round < ROUNDS; round++) {
      scale.small.push(await replayRate(small, smallKeys, READS_PER_ROUND));
      scale.large.push(await replayRate(large, largeKeys, READS_PER_ROUND));
      scale.cold.push(await replayRate(large, coldKeys, READS_PER_ROUND));
    }
    await small.close();
    await large.close();

    const ratioRow = (
      operation: string,
      measured: number[],
      baselineLabel: string,
      baseline: number[],
      target: number,
      unit: string,
    ): Comparison => ({
      operation,
      measured: median(measured),
      baselineLabel,
      baseline: median(baseline),
      ratio: median(measured) / median(baseline),
      target,
      unit,
    });
    return [
      ratioRow(
        'fresh create (fenced insert, durable)',
        rates.create,
        'raw durable insert',
        rates.rawInsert,
        0.5,
        'ops/s',
      ),
      // Issue 19's bound: the one ledger must not fall behind the two it replaced (0.85× then).
      ratioRow(
        'replay (same key, same arguments)',
        rates.replay,
        'raw indexed point lookup',
        rates.rawLookup,
        0.8,
        'ops/s',
      ),
      {
        ...ratioRow(
          `replay of random keys, ledger of ${LARGE_LEDGER.toLocaleString('en-US')} runs`,
          scale.large,
          `the same in a ledger of ${SMALL_LEDGER.toLocaleString('en-US')} runs`,
          scale.small,
          1 / 1.2,
          'ops/s',
        ),
        note:
          `${SMALL_LEDGER.toLocaleString('en-US')} random keys of each ledger, replayed in turn. Beyond that working set, ` +
          `${COLD_SAMPLE.toLocaleString('en-US')} random keys of the large ledger (too many for any cache, so each replay ` +
          `reads its row and its result from the file) replay at ${Math.round(median(scale.cold)).toLocaleString('en-US')} ops/s.`,
      },
      {
        operation: 'ledger bytes per finished run, beyond its images',
        measured: finished.perRun,
        baselineLabel: 'limit',
        baseline: MAX_BYTES_PER_RUN,
        ratio: MAX_BYTES_PER_RUN / finished.perRun,
        target: 1,
        unit: 'B',
        lowerIsBetter: true,
        note: `${FINISHED_RUNS} product shots rendered by the engine; their images average ${Math.round(finished.imageBytes).toLocaleString('en-US')} B each.`,
      },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
