// SQLite-specific behaviour: pragmas, migrations, and bad storage giving typed errors.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { RunledgerError, StorageUnavailableError } from '../../src/errors.js';
import { Ledger } from '../../src/ledger/ledger.js';
import { MIGRATIONS } from '../../src/ledger/migrations.js';
import { openSqliteLedger, SqliteStore, type SqliteStoreOptions } from '../../src/ledger/sqlite/store.js';
import { Phase } from '../../src/ledger/index.js';
import { request, typedError } from './contract.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'runledger-storage-'));
  dirs.push(dir);
  return dir;
}

const open: Ledger[] = [];
async function ledgerAt(
  path: string,
  extra: Partial<SqliteStoreOptions> & { clock?: () => number; leaseMs?: number } = {},
): Promise<Ledger> {
  const ledger = await openSqliteLedger({ path, ...extra });
  open.push(ledger);
  return ledger;
}

/** The connection a ledger writes runs on, to ask it for its own settings. */
async function runsConnection(path: string): Promise<Database.Database> {
  const store = await SqliteStore.open({ path });
  open.push({ close: () => store.close() } as Ledger);
  return store.database;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((l) => l.close()));
});

async function openError(path: string): Promise<RunledgerError> {
  try {
    await ledgerAt(path);
  } catch (err) {
    expect(err).toBeInstanceOf(RunledgerError);
    return err as RunledgerError;
  }
  throw new Error(`opening ${path} succeeded`);
}

describe('SQLite ledger file', () => {
  it('uses WAL, synchronous=FULL and a busy timeout, and records its migrations', async () => {
    const path = join(tempDir(), 'nested', 'dir', 'ledger.db');
    const ledger = await ledgerAt(path);
    await ledger.createOrReplay(request());
    const db = new Database(path, { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      const migrations = db.prepare('SELECT version, name FROM schema_migrations').all();
      expect(migrations).toEqual(MIGRATIONS.map((m) => ({ version: m.version, name: m.name })));
    } finally {
      db.close();
    }
    // synchronous and busy_timeout are per connection: ask the ledger's own.
    const runs = await runsConnection(path);
    expect(runs.pragma('synchronous', { simple: true })).toBe(2);
    expect(runs.pragma('busy_timeout', { simple: true })).toBe(5000);
  });

  it('stores a short result as its text and a long one deflated; both read back whole, from another process too', async () => {
    const path = join(tempDir(), 'ledger.db');
    const store = await SqliteStore.open({ path });
    const ledger = new Ledger(store);
    open.push(ledger);
    const short = { content: [{ type: 'text', text: 'ok' }] };
    const long = { evidence: 'contrast headline 12.1:1 (#16202C on #F7F4EE, needs 3:1); '.repeat(20) };
    const ids: string[] = [];
    for (const [i, result] of [short, long].entries()) {
      const created = await ledger.start(request({ idempotencyKey: `result-form-key-${i}` }), 'w1');
      if (created.kind !== 'created') throw new Error(`expected a new run, got ${created.kind}`);
      ids.push(created.run.id);
      // Stored without an fsync, as the proxy stores answers; the connection then commits durably again.
      expect(await ledger.finish(created.run.id, 'w1', result, undefined, false)).toMatchObject({
        phase: Phase.done,
        result,
      });
      expect(store.database.pragma('synchronous', { simple: true })).toBe(2);
    }
    const db = new Database(path, { readonly: true });
    try {
      const stored = db.prepare<[string], { result: Buffer }>('SELECT result FROM run_data WHERE run_id = ?');
      expect(stored.get(ids[0]!)!.result.toString('utf8')).toBe(JSON.stringify(short));
      expect(stored.get(ids[1]!)!.result[0]).toBe(0x78);
      expect(stored.get(ids[1]!)!.result.length).toBeLessThan(JSON.stringify(long).length / 4);
    } finally {
      db.close();
    }
    const other = await ledgerAt(path);
    expect((await other.getRun('acme', ids[0]!)).result).toEqual(short);
    expect((await other.getRun('acme', ids[1]!)).result).toEqual(long);
  });

  it('reopens an existing ledger without re-running migrations and keeps its runs', async () => {
    const path = join(tempDir(), 'ledger.db');
    const first = await ledgerAt(path);
    const created = await first.createOrReplay(request());
    await first.close();
    const second = await ledgerAt(path);
    const again = await second.createOrReplay(request());
    expect(again.kind).toBe('replayed');
    if (created.kind === 'created' && again.kind === 'replayed') expect(again.run.id).toBe(created.run.id);
  });

  it('migrates a schema 2 file: runs keep their phases, arguments, results, recovery points and keys', async () => {
    const path = join(tempDir(), 'ledger.db');
    const old = new Database(path);
    old.pragma('journal_mode = WAL');
    old.exec(
      `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`,
    );
    for (const m of MIGRATIONS.filter((m) => m.version <= 2)) {
      old.exec(m.sqlite);
      old.prepare('INSERT INTO schema_migrations VALUES (?, ?, 0)').run(m.version, m.name);
    }
    const t0 = Date.UTC(2026, 10, 1, 12);
    const at = (ms: number) => new Date(t0 + ms).toISOString();
    const insert = old.prepare(
      `INSERT INTO runs (id, tenant, tool, idem_key, fingerprint, args, cost, phase, phases, progress, recovery, result, created_at, updated_at)
       VALUES (?, 'acme', 'product_shot', ?, ?, ?, 4, ?, ?, ?, ?, ?, ?, ?)`,
    );
    const args = request().args;
    const fp = (await import('../../src/ledger/index.js')).fingerprint(args);
    insert.run(
      'run_done',
      'key-done-0000000001',
      fp,
      JSON.stringify(args),
      'done',
      JSON.stringify([
        { phase: 'queued', at: at(0) },
        { phase: 'composing', at: at(5) },
        { phase: 'rendering', at: at(7) },
        { phase: 'done', at: at(9) },
      ]),
      1,
      '{"composing":{"scenes":[1]}}',
      '{"score":1}',
      t0,
      t0 + 9,
    );
    insert.run(
      'run_live',
      'key-live-0000000001',
      fp,
      JSON.stringify(args),
      'rendering',
      JSON.stringify([
        { phase: 'queued', at: at(1) },
        { phase: 'composing', at: at(2) },
        { phase: 'rendering', at: at(3) },
      ]),
      0.5,
      '{"composing":{"scenes":[2]}}',
      null,
      t0 + 1,
      t0 + 3,
    );
    old.prepare(`INSERT INTO assets VALUES ('abc', 'image/png', 3, x'010203', ?)`).run(t0);
    old.prepare(`INSERT INTO run_assets VALUES ('run_done', 0, 'abc', '{}')`).run();
    old.close();

    const ledger = await ledgerAt(path, { clock: () => t0 + 60_000 });
    const done = await ledger.getRun('acme', 'run_done');
    expect(done.phases).toEqual([
      { phase: 'queued', at: at(0) },
      { phase: 'composing', at: at(5) },
      { phase: 'rendering', at: at(7) },
      { phase: 'done', at: at(9) },
    ]);
    expect(done).toMatchObject({ phase: 'done', args, result: { score: 1 }, progress: 1 });
    expect((await ledger.readAsset('acme', 'run_done', 0)).bytes).toEqual(Buffer.from([1, 2, 3]));
    const replay = await ledger.createOrReplay(request({ idempotencyKey: 'key-done-0000000001' }));
    expect(replay).toMatchObject({ kind: 'replayed', run: { id: 'run_done', result: { score: 1 } } });
    const resumed = await ledger.claim('w1');
    expect(resumed).toMatchObject({ id: 'run_live', phase: 'rendering', recovery: { composing: { scenes: [2] } } });
    expect(resumed?.phases.map((p) => p.phase)).toEqual(['queued', 'composing', 'rendering']);
  });

  it('gives the pages of swept runs back to the file system, so the file tracks what it keeps', async () => {
    const path = join(tempDir(), 'ledger.db');
    let now = Date.UTC(2026, 0, 1);
    const ledger = await ledgerAt(path, { clock: () => now, leaseMs: 1000 });
    const fileBytes = () => {
      const db = new Database(path);
      try {
        db.pragma('wal_checkpoint(TRUNCATE)');
        return (
          (db.pragma('page_count', { simple: true }) as number) * (db.pragma('page_size', { simple: true }) as number)
        );
      } finally {
        db.close();
      }
    };
    const empty = fileBytes();
    for (let i = 0; i < 200; i++) {
      await ledger.createOrReplay(request({ idempotencyKey: `key-bounded-${String(i).padStart(6, '0')}` }));
      const run = (await ledger.claim('w'))!;
      const image = { bytes: Buffer.alloc(20_000, i), mime: 'image/png', meta: {} };
      await ledger.attachAsset(run.id, 'w', 0, image, 0.9);
      await ledger.finish(run.id, 'w', { evaluation: 'x'.repeat(2000) });
    }
    const full = fileBytes();
    expect(full).toBeGreaterThan(empty + 200 * 20_000);
    now += 8 * 24 * 3600 * 1000;
    expect(await ledger.sweep()).toEqual({ runsForgotten: 200, assetsRemoved: 200 });
    expect(fileBytes()).toBeLessThan(empty + (full - empty) / 10);
  });

  it('shares one file between two open ledgers: the fence holds across connections', async () => {
    const path = join(tempDir(), 'ledger.db');
    const a = await ledgerAt(path);
    const b = await ledgerAt(path);
    const outs = await Promise.all([a.createOrReplay(request()), b.createOrReplay(request())]);
    expect(outs.map((o) => o.kind).sort()).toEqual(['created', 'replayed']);
  });

  it('answers a replay with what is in the file now, after this or another process changed the run', async () => {
    const path = join(tempDir(), 'ledger.db');
    const a = await ledgerAt(path);
    const b = await ledgerAt(path);
    const created = await a.createOrReplay(request());
    if (created.kind !== 'created') throw new Error(created.kind);
    const replayPhase = async () => {
      const out = await a.createOrReplay(request());
      return out.kind === 'replayed' ? out.run.phase : out.kind;
    };
    expect([await replayPhase(), await replayPhase()]).toEqual(['queued', 'queued']);
    const claimed = (await a.claim('w1'))!;
    await a.advance(claimed.id, 'w1', Phase.composing);
    expect(await replayPhase()).toBe('composing');
    await b.cancel('acme', created.run.id);
    expect(await replayPhase()).toBe('canceled');
    await b.deleteRun('acme', created.run.id);
    expect((await typedError(a.createOrReplay(request()))).code).toBe('not_found');
  });

  it('refuses a ledger written by a newer runledger', async () => {
    const path = join(tempDir(), 'ledger.db');
    await ledgerAt(path);
    const db = new Database(path);
    db.prepare('INSERT INTO schema_migrations VALUES (999, ?, 0)').run('from the future');
    db.close();
    const err = await openError(path);
    expect(err.code).toBe('storage_unavailable');
    expect(err.message).toMatch(/newer runledger/);
  });
});

describe('bad storage input', () => {
  it('names a --db that is not a database, and leaves the file untouched', async () => {
    const path = join(tempDir(), 'notes.txt');
    const content = 'these are my notes, not a database\n'.repeat(200);
    writeFileSync(path, content);
    const err = await openError(path);
    expect(err).toBeInstanceOf(StorageUnavailableError);
    expect(err.message).toContain(path);
    expect(err.message).toMatch(/not a SQLite database/);
    expect(err.details).toMatchObject({ path, cause: 'SQLITE_NOTADB' });
    expect(readFileSync(path, 'utf8')).toBe(content);
  });

  it('names a location that is a file where a directory should be', async () => {
    const file = join(tempDir(), 'plain-file');
    writeFileSync(file, 'x');
    const err = await openError(join(file, 'ledger.db'));
    expect(err.code).toBe('storage_unavailable');
    expect(err.message).toContain(file);
  });

  it('names a read-only location', async () => {
    // Directory modes do not stop root, so as root the location is sysfs, which no one may write.
    let dir = '/sys/runledger-ledger';
    if (process.getuid?.() !== 0) {
      dir = join(tempDir(), 'locked');
      mkdirSync(dir);
      chmodSync(dir, 0o555);
    }
    for (const path of [join(dir, 'ledger.db'), join(dir, 'deeper', 'ledger.db')]) {
      const err = await openError(path);
      expect(err.code).toBe('storage_unavailable');
      expect(err.message).toContain(path);
      expect(err.message).toMatch(/read-only/);
    }
  });

  it('reports a full disk as storage_unavailable, writes nothing, and stays usable', async () => {
    const path = join(tempDir(), 'ledger.db');
    await (await ledgerAt(path)).close();
    const pages = (() => {
      const db = new Database(path);
      const n = db.pragma('page_count', { simple: true }) as number;
      db.close();
      return n;
    })();
    const ledger = await ledgerAt(path, { maxPageCount: pages + 2 });
    const small = await ledger.createOrReplay(request({ idempotencyKey: 'key-small-000000001' }));
    expect(small.kind).toBe('created');
    const huge = request({ idempotencyKey: 'key-huge-0000000001', args: { brief: 'x'.repeat(200_000) } });
    const err = await typedError(ledger.createOrReplay(huge));
    expect(err.code).toBe('storage_unavailable');
    expect(err.message).toMatch(/full/);
    expect(err.details).toMatchObject({ path, cause: 'SQLITE_FULL' });
    // Nothing half-written: the key is free, the earlier run intact, and the ledger still answers.
    expect((await typedError(ledger.findRun('acme', 'product_shot', huge.idempotencyKey))).code).toBe('not_found');
    expect((await ledger.createOrReplay(request({ idempotencyKey: 'key-small-000000001' }))).kind).toBe('replayed');
    expect((await ledger.usage('acme')).runs).toBe(1);
    const retried = await ledger.createOrReplay({ ...huge, args: { brief: 'shorter now' } });
    expect(retried.kind).toBe('created');
  });

  it('reports a ledger locked too long by another process as busy; the same key then succeeds', async () => {
    const path = join(tempDir(), 'ledger.db');
    const ledger = await ledgerAt(path, { busyTimeoutMs: 50 });
    const holder = new Database(path);
    holder.exec('BEGIN IMMEDIATE');
    const err = await typedError(ledger.createOrReplay(request()));
    expect(err.code).toBe('storage_unavailable');
    expect(err.message).toMatch(/busy/);
    expect(err.details).toMatchObject({ path, cause: 'SQLITE_BUSY' });
    holder.exec('ROLLBACK');
    holder.close();
    expect((await ledger.createOrReplay(request())).kind).toBe('created');
  });

  it('fails only the create that does not fit, when others arrive in the same moment', async () => {
    const path = join(tempDir(), 'ledger.db');
    await (await ledgerAt(path)).close();
    const db = new Database(path);
    const pages = db.pragma('page_count', { simple: true }) as number;
    db.close();
    const ledger = await ledgerAt(path, { maxPageCount: pages + 3 });
    const huge = request({ idempotencyKey: 'key-huge-0000000002', args: { brief: 'x'.repeat(200_000) } });
    const settled = await Promise.allSettled([
      ledger.createOrReplay(request({ idempotencyKey: 'key-small-000000002' })),
      ledger.createOrReplay(huge),
      ledger.createOrReplay(request({ idempotencyKey: 'key-small-000000003' })),
    ]);
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((settled[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'storage_unavailable' });
    expect((await ledger.usage('acme')).runs).toBe(2);
  });
});
