import { describe, expect, it, vi } from 'vitest';
import { heardChanges } from '../../src/ledger/postgres/announcer.js';
import { openPostgresLedger } from '../../src/ledger/postgres/store.js';
import type { RunChange } from '../../src/ledger/index.js';
import { freshSchema, PG_URL, postgresAvailable } from '../helpers/ledgers.js';
import { ledgerContract, request } from './contract.js';
import { postgresProbe } from './probes.js';

describe.skipIf(!(await postgresAvailable()))('PostgreSQL', () => {
  ledgerContract('PostgreSQL', async (opts) => {
    const schema = freshSchema();
    const ledger = await openPostgresLedger({ url: PG_URL, schema, ...opts });
    return { ledger, probe: await postgresProbe(PG_URL, schema) };
  });

  describe('announcements between replicas', () => {
    it('tells every other replica of each committed change once, however many come at once', async () => {
      const schema = freshSchema();
      const [a, b] = await Promise.all([
        openPostgresLedger({ url: PG_URL, schema }),
        openPostgresLedger({ url: PG_URL, schema }),
      ]);
      try {
        const heardByA: RunChange[] = [];
        const heardByB: RunChange[] = [];
        a.subscribe((change) => heardByA.push(change));
        b.subscribe((change) => heardByB.push(change));
        // Enough at once to need several payloads (PostgreSQL takes under 8000 bytes in one).
        const created = await Promise.all(
          Array.from({ length: 400 }, (_, i) =>
            a.createOrReplay(request({ idempotencyKey: `announce-key-${String(i).padStart(6, '0')}` })),
          ),
        );
        const ids = created.map((outcome) => (outcome.kind === 'created' ? outcome.run.id : outcome.kind));
        await vi.waitFor(() => expect(heardByB).toHaveLength(400), { timeout: 10_000, interval: 20 });
        expect(new Set(heardByB.map((c) => c.runId))).toEqual(new Set(ids));
        expect(heardByB.every((c) => c.phase === 'queued')).toBe(true);
        // A replica hears its own changes from itself, as they commit, and not again from PostgreSQL.
        expect(heardByA).toHaveLength(400);
        const run = await b.claim('w1');
        await b.advance(run!.id, 'w1', 'composing');
        await vi.waitFor(() => expect(heardByA.at(-1)).toEqual({ runId: run!.id, phase: 'composing' }), {
          timeout: 10_000,
          interval: 20,
        });
        await b.close();
        expect(heardByA).toHaveLength(401);
        expect(heardByB).toHaveLength(401);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    });

    it('ignores its own announcements and payloads it cannot read', () => {
      const payload = JSON.stringify({
        from: 'replica-1',
        changes: [
          ['run_a', 'queued'],
          ['run_b', 'nonsense'],
          [7, 'done'],
        ],
      });
      expect(heardChanges(payload, 'replica-2')).toEqual([{ runId: 'run_a', phase: 'queued' }]);
      expect(heardChanges(payload, 'replica-1')).toEqual([]);
      expect(heardChanges('{"runId":"run_a","phase":"queued"}', 'replica-2')).toEqual([]);
      expect(heardChanges('not json', 'replica-2')).toEqual([]);
    });
  });
});
