// What the contract suite looks at beneath a ledger, per store: the bytes stored, and the statements
// that read a run's row.
import type Database from 'better-sqlite3';
import pg from 'pg';

export interface LedgerProbe {
  /** Counts the stored asset bytes (committed rows of `assets`); the read is issued at once. */
  storedAssets(): Promise<number>;
  /** How many statements that read from `runs` the body runs. */
  runReads(body: () => Promise<unknown>): Promise<number>;
  /** From now on the store refuses to delete stored bytes (a trigger raises an error). */
  refuseAssetDeletes(): Promise<void>;
}

const READS_RUNS = /^\s*SELECT\b[\s\S]*\bFROM runs\b/i;

/** Counts calls of `methods` on `prototype` whose statement text reads runs, while `body` runs. */
async function counting(
  prototype: object,
  methods: string[],
  textOf: (self: unknown, args: unknown[]) => unknown,
  body: () => Promise<unknown>,
): Promise<number> {
  let reads = 0;
  const target = prototype as Record<string, (...args: unknown[]) => unknown>;
  const originals = methods.map((name) => [name, target[name]!] as const);
  for (const [name, original] of originals) {
    target[name] = function (this: unknown, ...args: unknown[]) {
      const text = textOf(this, args);
      if (typeof text === 'string' && READS_RUNS.test(text)) reads++;
      return original.apply(this, args);
    };
  }
  try {
    await body();
  } finally {
    for (const [name, original] of originals) target[name] = original;
  }
  return reads;
}

export function sqliteProbe(db: Database.Database): LedgerProbe {
  return {
    storedAssets: async () => db.prepare<[], number>('SELECT count(*) FROM assets').pluck().get()!,
    runReads: (body) =>
      counting(
        Object.getPrototypeOf(db.prepare('SELECT 1')) as object,
        ['get', 'all'],
        (self) => (self as { source: string }).source,
        body,
      ),
    refuseAssetDeletes: async () =>
      void db.exec(`CREATE TRIGGER refuse BEFORE DELETE ON assets BEGIN SELECT RAISE(ABORT, 'refused'); END`),
  };
}

export async function postgresProbe(url: string, schema: string): Promise<LedgerProbe & { close(): Promise<void> }> {
  const client = new pg.Client({ connectionString: url, options: `-c search_path=${schema}` });
  await client.connect();
  return {
    storedAssets: async () => (await client.query<{ n: number }>('SELECT count(*)::int AS n FROM assets')).rows[0]!.n,
    runReads: (body) =>
      counting(
        pg.Client.prototype,
        ['query'],
        (_self, args) => (typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string } | undefined)?.text),
        body,
      ),
    refuseAssetDeletes: async () =>
      void (await client.query(`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
        CREATE TRIGGER refuse BEFORE DELETE ON assets FOR EACH ROW EXECUTE FUNCTION refuse()`)),
    close: () => client.end(),
  };
}
