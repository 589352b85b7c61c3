// The ledger contract: written once, run against every backend (see *.test.ts beside it).
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RunledgerError } from '../../src/errors.js';
import { MAX_STALLS, Phase, takeoverBackoffMs, type CreateRequest, type RunLedger } from '../../src/ledger/index.js';
import type { LedgerProbe } from './probes.js';

export interface LedgerFactoryOptions {
  clock: () => number;
  leaseMs: number;
  retentionMs: number;
}
/** A ledger on a fresh store, and a probe of what it stores (see probes.ts). */
export type LedgerFactory = (
  opts: LedgerFactoryOptions,
) => Promise<{ ledger: RunLedger; probe: LedgerProbe & { close?(): Promise<void> } }>;

const LEASE_MS = 10_000;
const RETENTION_MS = 7 * 24 * 3600 * 1000;
const KEY = 'key-0001-aaaa-bbbb-cccc';

export function request(over: Partial<CreateRequest> = {}): CreateRequest {
  return {
    tenant: 'acme',
    tool: 'product_shot',
    idempotencyKey: KEY,
    args: { brief: 'a red mug on oak', variants: 1, style: 'studio' },
    cost: 4,
    ...over,
  };
}

/** Awaits a promise expected to reject with a RunledgerError and returns it. */
export async function typedError(promise: Promise<unknown>): Promise<RunledgerError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RunledgerError);
  return err as RunledgerError;
}

export function ledgerContract(backend: string, makeLedger: LedgerFactory): void {
  describe(`RunLedger contract: ${backend}`, () => {
    let now: number;
    let ledger: RunLedger;
    let probe: LedgerProbe & { close?(): Promise<void> };
    const tick = (ms: number) => (now += ms);

    beforeEach(async () => {
      now = Date.UTC(2026, 0, 1);
      ({ ledger, probe } = await makeLedger({ clock: () => now, leaseMs: LEASE_MS, retentionMs: RETENTION_MS }));
    });
    afterEach(async () => {
      await ledger.close();
      await probe.close?.();
    });

    /** Claims the next run and drives it to done with one asset. */
    async function runToDone(owner = 'w1'): Promise<string> {
      const run = await ledger.claim(owner);
      if (run === null) throw new Error('nothing to claim');
      await ledger.advance(run.id, owner, Phase.composing);
      await ledger.advance(run.id, owner, Phase.rendering, { scenes: [1] });
      await ledger.attachAsset(
        run.id,
        owner,
        0,
        { bytes: Buffer.from('png-bytes'), mime: 'image/png', meta: {} },
        0.75,
      );
      await ledger.finish(run.id, owner, { score: 1 });
      return run.id;
    }

    describe('the replay table', () => {
      it('creates a queued run with its first phase timestamped', async () => {
        const out = await ledger.createOrReplay(request());
        expect(out.kind).toBe('created');
        if (out.kind !== 'created') return;
        expect(out.run.id).toMatch(/^run_/);
        expect(out.run.phase).toBe(Phase.queued);
        expect(out.run.phases).toEqual([{ phase: Phase.queued, at: new Date(now).toISOString() }]);
        expect(out.run.fingerprint).toMatch(/^[0-9a-f]{64}$/);
      });

      it('replays a queued run: same run id, no new run, no charge', async () => {
        const first = await ledger.createOrReplay(request());
        const again = await ledger.createOrReplay(request());
        expect(again.kind).toBe('replayed');
        if (first.kind !== 'created' || again.kind !== 'replayed') return;
        expect(again.run.id).toBe(first.run.id);
        expect(again.run.createdAt).toBe(first.run.createdAt);
        const usage = await ledger.usage('acme');
        expect(usage).toMatchObject({ runs: 1, charges: 0, credits: 0, replaysAbsorbed: 1 });
      });

      it('replays a done run with the identical result, billed once', async () => {
        const first = await ledger.createOrReplay(request());
        await runToDone();
        const again = await ledger.createOrReplay(request());
        const third = await ledger.createOrReplay(request());
        if (again.kind !== 'replayed' || third.kind !== 'replayed' || first.kind !== 'created') {
          throw new Error(`expected replays, got ${again.kind}, ${third.kind}`);
        }
        expect(again.run.id).toBe(first.run.id);
        expect(again.run.phase).toBe(Phase.done);
        expect(again.run.result).toEqual({ score: 1 });
        expect(third.run.result).toEqual(again.run.result);
        expect(await ledger.usage('acme')).toMatchObject({ runs: 1, charges: 1, credits: 4, replaysAbsorbed: 2 });
      });

      it('replays a failed run with its error', async () => {
        await ledger.createOrReplay(request());
        const run = await ledger.claim('w1');
        await ledger.fail(run!.id, 'w1', { code: 'generation_failed', message: 'renderer crashed', details: {} });
        const again = await ledger.createOrReplay(request());
        if (again.kind !== 'replayed') throw new Error(again.kind);
        expect(again.run.phase).toBe(Phase.failed);
        expect(again.run.error).toMatchObject({ code: 'generation_failed', message: 'renderer crashed' });
        expect((await ledger.usage('acme')).charges).toBe(0);
      });

      it('replays a canceled run as canceled', async () => {
        const first = await ledger.createOrReplay(request());
        if (first.kind !== 'created') throw new Error(first.kind);
        await ledger.cancel('acme', first.run.id);
        const again = await ledger.createOrReplay(request());
        if (again.kind !== 'replayed') throw new Error(again.kind);
        expect(again.run.phase).toBe(Phase.canceled);
        expect((await ledger.usage('acme')).charges).toBe(0);
      });

      it('refuses the same key with different arguments, naming the run and the fields, creating nothing', async () => {
        const first = await ledger.createOrReplay(request());
        if (first.kind !== 'created') throw new Error(first.kind);
        const out = await ledger.createOrReplay(
          request({ args: { brief: 'a blue mug', variants: 1, style: 'bold', extra: true } }),
        );
        expect(out).toEqual({
          kind: 'conflict',
          runId: first.run.id,
          createdAt: first.run.createdAt,
          differingFields: ['brief', 'extra', 'style'],
        });
        expect((await ledger.usage('acme')).runs).toBe(1);
        expect(await ledger.claim('w1')).toMatchObject({ id: first.run.id });
        expect(await ledger.claim('w2')).toBeNull();
      });

      // The per-call fields (idempotency_key, wait_seconds, dry_run) never reach the ledger: mcp/ takes
      // them off (test/server.test.ts), and for a proxied tool they are arguments like any other.
      it('ignores the order of keys in the fingerprint', async () => {
        const first = await ledger.createOrReplay(request({ args: { a: 1, b: { y: 2, x: 1 } } }));
        const again = await ledger.createOrReplay(request({ args: { b: { x: 1, y: 2 }, a: 1 } }));
        expect(again.kind).toBe('replayed');
        if (first.kind === 'created' && again.kind === 'replayed') expect(again.run.id).toBe(first.run.id);
      });

      it('makes exactly one run from 50 identical calls at once', async () => {
        const outs = await Promise.all(Array.from({ length: 50 }, () => ledger.createOrReplay(request())));
        const ids = new Set(outs.map((o) => (o.kind === 'conflict' ? o.runId : o.run.id)));
        expect(ids.size).toBe(1);
        expect(outs.filter((o) => o.kind === 'created')).toHaveLength(1);
        expect((await ledger.usage('acme')).runs).toBe(1);
      });

      it('answers each of many creates in one moment on its own: created, replayed or not_found', async () => {
        const deleted = await ledger.createOrReplay(request({ idempotencyKey: 'key-deleted-000000001' }));
        if (deleted.kind !== 'created') throw new Error(deleted.kind);
        await ledger.deleteRun('acme', deleted.run.id);
        const settled = await Promise.allSettled([
          ledger.createOrReplay(request({ idempotencyKey: 'key-fresh-0000000001' })),
          ledger.createOrReplay(request({ idempotencyKey: 'key-deleted-000000001' })),
          ledger.createOrReplay(request({ idempotencyKey: 'key-fresh-0000000002' })),
          ledger.createOrReplay(request({ idempotencyKey: 'key-fresh-0000000001' })),
        ]);
        expect(
          settled.map((s) => (s.status === 'fulfilled' ? s.value.kind : (s.reason as RunledgerError).code)),
        ).toEqual(['created', 'not_found', 'created', 'replayed']);
      });

      it('never collides the same key across tenants or tools', async () => {
        const a = await ledger.createOrReplay(request());
        const b = await ledger.createOrReplay(request({ tenant: 'globex' }));
        const c = await ledger.createOrReplay(request({ tool: 'social_card' }));
        expect([a.kind, b.kind, c.kind]).toEqual(['created', 'created', 'created']);
        const ids = [a, b, c].map((o) => (o.kind === 'created' ? o.run.id : ''));
        expect(new Set(ids).size).toBe(3);
      });

      it.each([
        ['too short', 'short-key'],
        ['too long', 'k'.repeat(129)],
        ['with a space', 'key with a space in it'],
        ['non-ASCII', 'ключ-идемпотентности-1'],
        ['with a control character', 'key-0001-aaaa-bbbb\u0007'],
      ])('rejects a key %s as validation_failed and stores nothing', async (_label, key) => {
        const err = await typedError(ledger.createOrReplay(request({ idempotencyKey: key })));
        expect(err.code).toBe('validation_failed');
        expect(err.details).toMatchObject({ problems: [{ field: 'idempotency_key' }] });
        expect((await ledger.usage('acme')).runs).toBe(0);
        expect((await ledger.createOrReplay(request())).kind).toBe('created');
      });

      it('accepts keys of exactly 16 and 128 printable characters', async () => {
        expect((await ledger.createOrReplay(request({ idempotencyKey: '!'.repeat(16) }))).kind).toBe('created');
        expect((await ledger.createOrReplay(request({ idempotencyKey: '~'.repeat(128) }))).kind).toBe('created');
      });

      it('answers not_found for a key whose run was deleted, until the retention window ends', async () => {
        const first = await ledger.createOrReplay(request());
        if (first.kind !== 'created') throw new Error(first.kind);
        await ledger.deleteRun('acme', first.run.id);
        const err = await typedError(ledger.createOrReplay(request()));
        expect(err.code).toBe('not_found');
        expect(err.details).toMatchObject({ run_id: first.run.id, deleted: true });
        expect((await typedError(ledger.getRun('acme', first.run.id))).code).toBe('not_found');
        tick(RETENTION_MS + 1);
        const later = await ledger.createOrReplay(request());
        expect(later.kind).toBe('created');
        if (later.kind === 'created') expect(later.run.id).not.toBe(first.run.id);
      });

      it('starts a new run for a key older than the retention window', async () => {
        const first = await ledger.createOrReplay(request());
        await runToDone();
        tick(RETENTION_MS - 1);
        expect((await ledger.createOrReplay(request())).kind).toBe('replayed');
        tick(2);
        const later = await ledger.createOrReplay(request());
        expect(later.kind).toBe('created');
        if (later.kind === 'created' && first.kind === 'created') expect(later.run.id).not.toBe(first.run.id);
      });

      it('previews create, replay and conflict without writing', async () => {
        expect(await ledger.preview(request())).toMatchObject({ kind: 'create' });
        expect((await ledger.usage('acme')).runs).toBe(0);
        const first = await ledger.createOrReplay(request());
        if (first.kind !== 'created') throw new Error(first.kind);
        const replay = await ledger.preview(request());
        expect(replay).toMatchObject({ kind: 'replay', run: { id: first.run.id } });
        const conflict = await ledger.preview(request({ args: { brief: 'other' } }));
        expect(conflict).toMatchObject({ kind: 'conflict', runId: first.run.id });
        expect(await ledger.usage('acme')).toMatchObject({ runs: 1, replaysAbsorbed: 0 });
      });

      it('finds a run by key within its tool and tenant only', async () => {
        const first = await ledger.createOrReplay(request());
        if (first.kind !== 'created') throw new Error(first.kind);
        expect((await ledger.findRun('acme', 'product_shot', KEY)).id).toBe(first.run.id);
        expect((await typedError(ledger.findRun('acme', 'social_card', KEY))).code).toBe('not_found');
        expect((await typedError(ledger.findRun('globex', 'product_shot', KEY))).code).toBe('not_found');
        expect((await typedError(ledger.getRun('globex', first.run.id))).code).toBe('not_found');
      });
    });

    describe('phases', () => {
      it('records every transition in order with rising timestamps', async () => {
        const first = await ledger.createOrReplay(request());
        tick(5);
        await runToDone();
        const run = await ledger.getRun('acme', first.kind === 'created' ? first.run.id : '');
        expect(run.phases.map((p) => p.phase)).toEqual(['queued', 'composing', 'rendering', 'done']);
        const times = run.phases.map((p) => Date.parse(p.at));
        expect([...times].sort((a, b) => a - b)).toEqual(times);
        expect(run.progress).toBe(1);
      });

      it('refuses to move backwards or to skip past a terminal phase', async () => {
        await ledger.createOrReplay(request());
        const run = (await ledger.claim('w1'))!;
        await ledger.advance(run.id, 'w1', Phase.rendering);
        expect((await typedError(ledger.advance(run.id, 'w1', Phase.composing))).code).toBe('internal_error');
        await ledger.finish(run.id, 'w1', { ok: true });
        expect(await ledger.advance(run.id, 'w1', Phase.rendering)).toBeNull();
        expect(await ledger.fail(run.id, 'w1', { code: 'generation_failed', message: 'late', details: {} })).toBeNull();
        const after = await ledger.getRun('acme', run.id);
        expect(after.phase).toBe(Phase.done);
        expect(after.error).toBeNull();
      });

      it('never changes a terminal run: cancel of a done run says so', async () => {
        const first = await ledger.createOrReplay(request());
        const id = await runToDone();
        expect((await ledger.cancel('acme', id)).outcome).toBe('already_finished');
        expect((await ledger.getRun('acme', id)).phase).toBe(Phase.done);
        expect(first.kind).toBe('created');
      });

      it('tells its subscribers of each change once, by the time the write returns', async () => {
        const heard: string[] = [];
        const unsubscribe = ledger.subscribe((change) => heard.push(change.phase));
        await ledger.createOrReplay(request());
        const runId = await runToDone();
        await ledger.createOrReplay(request());
        await ledger.deleteRun('acme', runId);
        unsubscribe();
        await ledger.createOrReplay(request({ idempotencyKey: 'key-after-unsubscribe' }));
        expect(heard).toEqual(['queued', 'composing', 'rendering', 'rendering', 'done', 'done']);
      });

      it('tells of a deleted live run once, as canceled', async () => {
        const created = await ledger.createOrReplay(request());
        if (created.kind !== 'created') throw new Error(created.kind);
        const heard: string[] = [];
        ledger.subscribe((change) => heard.push(change.phase));
        await ledger.deleteRun('acme', created.run.id);
        expect(heard).toEqual(['canceled']);
      });

      it('cancels a live run once; canceling again is a no-op', async () => {
        const first = await ledger.createOrReplay(request());
        if (first.kind !== 'created') throw new Error(first.kind);
        const a = await ledger.cancel('acme', first.run.id);
        const b = await ledger.cancel('acme', first.run.id);
        expect([a.outcome, b.outcome]).toEqual(['canceled', 'already_canceled']);
        expect(b.run.phases.map((p) => p.phase)).toEqual(['queued', 'canceled']);
        expect(await ledger.claim('w1')).toBeNull();
      });
    });

    describe('leases', () => {
      it('claims the oldest queued run first, one worker per run', async () => {
        const a = await ledger.createOrReplay(request({ idempotencyKey: 'key-a-0000000000001' }));
        tick(1);
        const b = await ledger.createOrReplay(request({ idempotencyKey: 'key-b-0000000000002' }));
        const first = await ledger.claim('w1');
        const second = await ledger.claim('w2');
        expect(first?.id).toBe(a.kind === 'created' ? a.run.id : '');
        expect(second?.id).toBe(b.kind === 'created' ? b.run.id : '');
        expect(await ledger.claim('w3')).toBeNull();
        expect(first?.attempts).toBe(1);
      });

      it('keeps a renewed lease and hands an expired one to another worker with its recovery point', async () => {
        await ledger.createOrReplay(request());
        const run = (await ledger.claim('w1'))!;
        await ledger.advance(run.id, 'w1', Phase.composing);
        await ledger.advance(run.id, 'w1', Phase.rendering, { scenes: ['scene-a', 'scene-b'] });
        await ledger.attachAsset(
          run.id,
          'w1',
          0,
          { bytes: Buffer.from('first'), mime: 'image/png', meta: { w: 1 } },
          0.75,
        );
        tick(LEASE_MS - 1);
        expect(await ledger.renew(run.id, 'w1')).toBe(true);
        tick(LEASE_MS - 1);
        expect(await ledger.claim('w2')).toBeNull();
        tick(2);
        const taken = await ledger.claim('w2');
        expect(taken?.id).toBe(run.id);
        expect(taken?.phase).toBe(Phase.rendering);
        expect(taken?.attempts).toBe(2);
        expect(taken?.recovery).toEqual({ composing: { scenes: ['scene-a', 'scene-b'] } });
        expect(taken?.assets.map((a) => a.n)).toEqual([0]);
        expect(taken?.progress).toBe(0.75);
        // The worker that lost the lease can no longer touch the run.
        expect(await ledger.renew(run.id, 'w1')).toBe(false);
        const late = { bytes: Buffer.from('late'), mime: 'image/png', meta: {} };
        expect(await ledger.attachAsset(run.id, 'w1', 1, late, 0.9)).toBe(false);
        expect(await ledger.finish(run.id, 'w1', { by: 'w1' })).toBeNull();
        expect(await ledger.finish(run.id, 'w2', { by: 'w2' })).toMatchObject({ phase: 'done', result: { by: 'w2' } });
        expect((await ledger.usage('acme')).charges).toBe(1);
      });

      it('makes a released run claimable at once', async () => {
        await ledger.createOrReplay(request());
        const run = (await ledger.claim('w1'))!;
        await ledger.release(run.id, 'w1');
        expect((await ledger.claim('w2'))?.id).toBe(run.id);
      });

      it('claims only the tools a worker names', async () => {
        await ledger.createOrReplay(request({ tool: 'send_email', idempotencyKey: 'key-proxied-000000001' }));
        tick(1);
        const own = await ledger.createOrReplay(request({ idempotencyKey: 'key-own-00000000000002' }));
        expect((await ledger.claim('w1', { tools: ['product_shot'] }))?.id).toBe(
          own.kind === 'created' ? own.run.id : '',
        );
        expect(await ledger.claim('w1', { tools: ['product_shot', 'social_card'] })).toBeNull();
        expect((await ledger.claim('w2'))?.tool).toBe('send_email');
      });

      it('keeps one key of each executor apart, and each claims only its own runs', async () => {
        const rendered = await ledger.createOrReplay(request());
        const proxied = await ledger.start({ ...request(), executor: 'proxy' }, 'proxy-1');
        expect([rendered.kind, proxied.kind]).toEqual(['created', 'created']);
        if (rendered.kind !== 'created' || proxied.kind !== 'created') return;
        expect(proxied.run).toMatchObject({ executor: 'proxy', tool: 'product_shot', idempotencyKey: KEY });
        expect(proxied.run.id).not.toBe(rendered.run.id);
        tick(LEASE_MS + 1);
        expect(await ledger.claim('w1')).toMatchObject({ id: rendered.run.id, executor: 'engine' });
        expect(await ledger.claim('w2')).toBeNull();
        expect(await ledger.claim('proxy-2', { executor: 'proxy' })).toMatchObject({ id: proxied.run.id });
        expect((await ledger.findRun('acme', 'product_shot', KEY)).id).toBe(rendered.run.id);
      });

      it('creates a run already leased to the worker that starts it, and a replay does not take it', async () => {
        const first = await ledger.start(request(), 'proxy-1');
        expect(first).toMatchObject({ kind: 'created', run: { attempts: 1, phase: 'queued' } });
        const runId = first.kind === 'created' ? first.run.id : '';
        expect((await ledger.getRun('acme', runId)).lease).not.toBeNull();
        expect(await ledger.start(request(), 'proxy-2')).toMatchObject({
          kind: 'replayed',
          run: { id: runId, attempts: 1 },
        });
        expect(await ledger.claim('w1')).toBeNull();
        expect(await ledger.claimRun(runId, 'proxy-2')).toBeNull();
        expect(await ledger.finish(runId, 'proxy-1', { answer: 1 })).toMatchObject({
          phase: 'done',
          result: { answer: 1 },
        });
      });

      it('hands one run to claimRun only once its holder is gone, counting the attempt', async () => {
        const first = await ledger.start(request(), 'proxy-1');
        const runId = first.kind === 'created' ? first.run.id : '';
        tick(LEASE_MS - 1);
        expect(await ledger.claimRun(runId, 'proxy-2')).toBeNull();
        tick(2);
        expect(await ledger.claimRun(runId, 'proxy-2')).toMatchObject({ id: runId, attempts: 2 });
        expect(await ledger.claimRun(runId, 'proxy-3')).toBeNull();
        expect(await ledger.renew(runId, 'proxy-1')).toBe(false);
        await ledger.fail(runId, 'proxy-2', { code: 'generation_failed', message: 'gone', details: {} });
        tick(LEASE_MS * 10);
        expect(await ledger.claimRun(runId, 'proxy-3')).toBeNull();
        expect(await ledger.claimRun('run_missing', 'proxy-3')).toBeNull();
      });

      it('forgets a run only for its lease holder, freeing the key', async () => {
        const first = await ledger.start(request(), 'proxy-1');
        const runId = first.kind === 'created' ? first.run.id : '';
        expect(await ledger.forget(runId, 'proxy-2')).toBe(false);
        expect(await ledger.forget(runId, 'proxy-1')).toBe(true);
        expect((await typedError(ledger.getRun('acme', runId))).code).toBe('not_found');
        const again = await ledger.createOrReplay(request({ args: { other: true } }));
        expect(again.kind).toBe('created');
        expect(again.kind === 'created' && again.run.id).not.toBe(runId);
        expect((await ledger.usage('acme')).runs).toBe(1);
      });

      it('stops a worker whose run was canceled', async () => {
        const first = await ledger.createOrReplay(request());
        const run = (await ledger.claim('w1'))!;
        await ledger.cancel('acme', run.id);
        expect(await ledger.renew(run.id, 'w1')).toBe(false);
        expect(await ledger.advance(run.id, 'w1', Phase.composing)).toBeNull();
        expect(first.kind).toBe('created');
      });
    });

    describe('checkpoints and stalls', () => {
      it('keeps a named checkpoint for the next worker, only from the lease holder', async () => {
        await ledger.createOrReplay(request());
        const run = (await ledger.claim('w1'))!;
        expect(await ledger.checkpoint(run.id, 'w1', 'upstream/0', { requested: true })).toBe(true);
        expect(await ledger.checkpoint(run.id, 'w2', 'upstream/0', { requested: false })).toBe(false);
        tick(LEASE_MS + 1);
        const taken = (await ledger.claim('w2'))!;
        expect(taken.recovery).toEqual({ 'upstream/0': { requested: true } });
      });

      const RENDERER_DIED = {
        code: 'generation_failed',
        message: 'the render thread died (exit code 70)',
        details: {},
      } as const;

      it('never counts a lease that ran out against the run: its holder crashed, whatever it had done', async () => {
        await ledger.createOrReplay(request());
        const first = (await ledger.claim('w1'))!;
        expect(first.stalls).toBe(0);
        for (let i = 2; i <= 2 * MAX_STALLS; i++) {
          tick(LEASE_MS);
          expect(await ledger.claim(`w${i}`)).toMatchObject({ id: first.id, attempts: i, stalls: 0 });
        }
        expect(await ledger.getRun('acme', first.id)).toMatchObject({ phase: 'queued', stalls: 0 });
      });

      it('never counts a released lease as a stall', async () => {
        await ledger.createOrReplay(request());
        const run = (await ledger.claim('w1'))!;
        await ledger.release(run.id, 'w1');
        expect(await ledger.claim('w2')).toMatchObject({ id: run.id, attempts: 2, stalls: 0 });
      });

      it('tries a run whose attempts fail on it again only after a back-off that grows with them', async () => {
        await ledger.createOrReplay(request());
        let run = (await ledger.claim('w0'))!;
        for (let i = 1; i < MAX_STALLS; i++) {
          expect(await ledger.abandon(run.id, `w${i - 1}`, RENDERER_DIED)).toMatchObject({
            phase: 'queued',
            stalls: i,
            lease: null,
          });
          expect((await ledger.getRun('acme', run.id)).retryAt).toBe(
            new Date(now + takeoverBackoffMs(i, LEASE_MS)).toISOString(),
          );
          tick(takeoverBackoffMs(i, LEASE_MS) - 1);
          expect(await ledger.claim(`early-${i}`)).toBeNull();
          tick(1);
          run = (await ledger.claim(`w${i}`))!;
          expect(run).toMatchObject({ stalls: i, attempts: i + 1 });
        }
        expect(takeoverBackoffMs(3, LEASE_MS)).toBeGreaterThan(takeoverBackoffMs(1, LEASE_MS));
      });

      it(`fails a run, unbilled, at the ${MAX_STALLS}th attempt in a row that failed on it, naming its attempts`, async () => {
        await ledger.createOrReplay(request());
        for (let i = 1; i <= MAX_STALLS; i++) {
          const run = (await ledger.claim(`w${i}`))!;
          const after = await ledger.abandon(run.id, `w${i}`, RENDERER_DIED);
          tick(takeoverBackoffMs(i, LEASE_MS));
          if (i < MAX_STALLS) continue;
          expect(after).toMatchObject({ phase: 'failed', stalls: MAX_STALLS, lease: null, retryAt: null });
          expect(after!.error).toMatchObject({
            code: 'generation_failed',
            message: expect.stringMatching(
              /^Gave up after 5 attempts, the last 5 of them failing in a row on the run itself; the last: the render thread died/,
            ),
            details: { attempts: MAX_STALLS, failed_in_a_row: MAX_STALLS, last_failure: RENDERER_DIED },
          });
        }
        expect(await ledger.claim('w-last')).toBeNull();
        expect((await ledger.usage('acme')).charges).toBe(0);
      });

      it('starts counting failed attempts again after progress', async () => {
        await ledger.createOrReplay(request());
        const run = (await ledger.claim('w1'))!;
        await ledger.abandon(run.id, 'w1', RENDERER_DIED);
        expect(await ledger.claim('w2')).toBeNull();
        tick(takeoverBackoffMs(1, LEASE_MS));
        const second = (await ledger.claim('w2'))!;
        expect(second.stalls).toBe(1);
        await ledger.checkpoint(run.id, 'w2', 'step', { ok: true });
        expect((await ledger.getRun('acme', run.id)).stalls).toBe(0);
        expect(await ledger.abandon(run.id, 'w2', RENDERER_DIED)).toMatchObject({ stalls: 1 });
        expect(await ledger.abandon(run.id, 'w2', RENDERER_DIED)).toBeNull();
      });
    });

    describe('billing, assets and retention', () => {
      it('records what each charge was spent on, so usage says credits per provider', async () => {
        await ledger.createOrReplay(request());
        tick(1); // claimed oldest first
        await ledger.createOrReplay(request({ idempotencyKey: 'key-0002-aaaa-bbbb-cccc', cost: 6 }));
        for (const [owner, provider] of [
          ['w1', 'builtin'],
          ['w2', 'openai'],
        ] as const) {
          const run = (await ledger.claim(owner))!;
          await ledger.finish(
            run.id,
            owner,
            { ok: true },
            { provider, model: provider === 'openai' ? 'gpt-image-1' : null },
          );
        }
        expect((await ledger.usage('acme')).byProvider).toEqual({
          builtin: { charges: 1, credits: 4 },
          openai: { charges: 1, credits: 6 },
        });
      });

      it('writes one charge however often finish is called', async () => {
        await ledger.createOrReplay(request());
        const id = await runToDone();
        expect(await ledger.finish(id, 'w1', { again: true })).toBeNull();
        const usage = await ledger.usage('acme');
        expect(usage).toMatchObject({ runs: 1, charges: 1, credits: 4 });
        expect(usage.byTool.product_shot).toMatchObject({ runs: 1, charges: 1, credits: 4 });
        expect((await ledger.getRun('acme', id)).result).toEqual({ score: 1 });
      });

      it('keeps usage apart per tenant', async () => {
        await ledger.createOrReplay(request());
        await runToDone();
        expect(await ledger.usage('globex')).toMatchObject({ runs: 0, charges: 0, credits: 0 });
      });

      it('reads assets back by run and number, addressed by their SHA-256', async () => {
        await ledger.createOrReplay(request());
        const id = await runToDone();
        const asset = await ledger.readAsset('acme', id, 0);
        expect(asset.bytes.toString()).toBe('png-bytes');
        expect(asset.mime).toBe('image/png');
        expect(asset.sha256).toBe(createHash('sha256').update('png-bytes').digest('hex'));
        expect((await ledger.listAssets('acme', id))[0]).toMatchObject({ n: 0, sha256: asset.sha256, size: 9 });
        expect((await typedError(ledger.readAsset('acme', id, 1))).code).toBe('not_found');
        expect((await typedError(ledger.readAsset('globex', id, 0))).code).toBe('not_found');
      });

      it('keeps shared bytes while another run still uses them', async () => {
        await ledger.createOrReplay(request());
        await ledger.createOrReplay(request({ idempotencyKey: 'key-0002-aaaa-bbbb-cccc' }));
        const a = await runToDone('w1');
        const b = await runToDone('w2');
        expect((await ledger.readAsset('acme', a, 0)).sha256).toBe((await ledger.readAsset('acme', b, 0)).sha256);
        await ledger.deleteRun('acme', a);
        expect((await ledger.readAsset('acme', b, 0)).bytes.toString()).toBe('png-bytes');
      });

      it('deleting a live run cancels it, keeps its charge history and leaves a tombstone', async () => {
        const first = await ledger.createOrReplay(request());
        if (first.kind !== 'created') throw new Error(first.kind);
        await ledger.claim('w1');
        await ledger.deleteRun('acme', first.run.id);
        expect(await ledger.advance(first.run.id, 'w1', Phase.composing)).toBeNull();
        expect((await ledger.listRuns('acme')).runs).toEqual([]);
        expect((await typedError(ledger.deleteRun('acme', first.run.id))).code).toBe('not_found');
      });

      it('sweeps terminal runs and tombstones past retention, keeping live runs and charges', async () => {
        await ledger.createOrReplay(request());
        const done = await runToDone();
        const live = await ledger.createOrReplay(request({ idempotencyKey: 'key-live-00000000001' }));
        expect(await ledger.sweep()).toEqual({ runsForgotten: 0, assetsRemoved: 0 });
        tick(RETENTION_MS + 1);
        expect(await ledger.sweep()).toEqual({ runsForgotten: 1, assetsRemoved: 1 });
        expect((await typedError(ledger.getRun('acme', done))).code).toBe('not_found');
        if (live.kind === 'created') expect((await ledger.getRun('acme', live.run.id)).phase).toBe('queued');
        expect(await ledger.usage('acme')).toMatchObject({ runs: 1, charges: 1, credits: 4 });
      });
    });

    describe('stream events', () => {
      it('replays the events after a given one, on its stream only, for its session only', async () => {
        const first = await ledger.appendEvent('s1', 'stream-a', '{"n":1}');
        await ledger.appendEvent('s1', 'stream-b', '{"other":true}');
        await ledger.appendEvent('s1', 'stream-a', '{"n":2}');
        await ledger.appendEvent('s1', 'stream-a', '{"n":3}');
        expect(await ledger.eventStreamOf('s1', first)).toBe('stream-a');
        expect(await ledger.eventStreamOf('s2', first)).toBeNull();
        expect(await ledger.eventStreamOf('s1', 'not-an-id')).toBeNull();
        const after = await ledger.eventsAfter('s1', 'stream-a', first);
        expect(after.map((e) => e.message)).toEqual(['{"n":2}', '{"n":3}']);
        expect(after.every((e) => e.streamId === 'stream-a')).toBe(true);
        expect((await ledger.eventsAfter('s1', 'stream-a', null)).map((e) => e.message)).toEqual([
          '{"n":1}',
          '{"n":2}',
          '{"n":3}',
        ]);
        expect(await ledger.eventsAfter('s2', 'stream-a', null)).toEqual([]);
        expect(await ledger.eventsAfter('s1', 'stream-a', 'garbage')).toEqual([]);
      });

      it('gives every event of one tick its own id, in order', async () => {
        const ids = await Promise.all(
          Array.from({ length: 20 }, (_, i) => ledger.appendEvent('s1', 'burst', `{"i":${i}}`)),
        );
        expect(new Set(ids).size).toBe(20);
        const stored = await ledger.eventsAfter('s1', 'burst', null);
        expect(stored.map((e) => e.id)).toEqual(ids);
        expect(stored.map((e) => JSON.parse(e.message).i)).toEqual(Array.from({ length: 20 }, (_, i) => i));
      });

      it('sweeps events after a day', async () => {
        const id = await ledger.appendEvent('s1', 'stream-a', '{}');
        await ledger.appendEvent('s1', 'stream-a', '{"later":true}');
        tick(24 * 3600 * 1000 + 1);
        await ledger.sweep();
        expect(await ledger.eventStreamOf('s1', id)).toBeNull();
      });

      it('answers a ping', async () => {
        await expect(ledger.ping()).resolves.toBeUndefined();
      });
    });

    // Each of these was written twice before there was one Ledger, and the copies had drifted apart.
    describe('one behaviour on every store', () => {
      it("announces an asset attached to a run with the run's own phase", async () => {
        await ledger.createOrReplay(request());
        const run = (await ledger.claim('w1'))!;
        await ledger.advance(run.id, 'w1', Phase.composing);
        const heard: string[] = [];
        ledger.subscribe((change) => heard.push(change.phase));
        await ledger.attachAsset(run.id, 'w1', 0, { bytes: Buffer.from('early'), mime: 'image/png', meta: {} }, 0.3);
        expect(heard).toEqual(['composing']);
      });

      it('reads a run once to move it on: the moved run is built from what was written, not read back', async () => {
        await ledger.createOrReplay(request());
        const run = (await ledger.claim('w1'))!;
        expect(await probe.runReads(() => ledger.advance(run.id, 'w1', Phase.composing))).toBe(1);
        expect(await probe.runReads(() => ledger.finish(run.id, 'w1', { score: 1 }))).toBe(1);
        expect(await ledger.getRun('acme', run.id)).toMatchObject({ phase: 'done', result: { score: 1 } });
      });

      it('deletes a run and the bytes only it used in one commit: when the bytes cannot go, nothing goes', async () => {
        await ledger.createOrReplay(request());
        const runId = await runToDone();
        await probe.refuseAssetDeletes();
        expect((await typedError(ledger.deleteRun('acme', runId))).code).toBe('internal_error');
        expect(await ledger.getRun('acme', runId)).toMatchObject({ phase: 'done', result: { score: 1 } });
        expect(await probe.storedAssets()).toBe(1);
      });
    });

    describe('listing', () => {
      it('lists newest first with cursor pagination and filters', async () => {
        const ids: string[] = [];
        for (let i = 0; i < 5; i++) {
          const out = await ledger.createOrReplay(
            request({ idempotencyKey: `key-list-000000000${i}`, tool: i % 2 === 0 ? 'product_shot' : 'social_card' }),
          );
          if (out.kind === 'created') ids.push(out.run.id);
          tick(1);
        }
        const page1 = await ledger.listRuns('acme', { limit: 2 });
        const page2 = await ledger.listRuns('acme', { limit: 2, cursor: page1.nextCursor! });
        const page3 = await ledger.listRuns('acme', { limit: 2, cursor: page2.nextCursor! });
        expect([...page1.runs, ...page2.runs, ...page3.runs].map((r) => r.id)).toEqual([...ids].reverse());
        expect(page3.nextCursor).toBeNull();
        const cards = await ledger.listRuns('acme', { tool: 'social_card' });
        expect(cards.runs.map((r) => r.tool)).toEqual(['social_card', 'social_card']);
        expect((await ledger.listRuns('acme', { phase: Phase.done })).runs).toEqual([]);
        expect((await typedError(ledger.listRuns('acme', { cursor: 'garbage' }))).code).toBe('validation_failed');
        expect((await typedError(ledger.listRuns('acme', { limit: 0 }))).code).toBe('validation_failed');
      });
    });

    describe('jobs at job providers and their webhooks', () => {
      const JOB = {
        provider: 'replicate',
        jobId: 'pred_0001',
        fields: { status_url: 'https://api.example/p/pred_0001' },
      };

      /** A run claimed by w1 and moved to rendering, where a job is submitted. */
      async function rendering(key = KEY): Promise<string> {
        await ledger.createOrReplay(request({ idempotencyKey: key }));
        const run = await ledger.claim('w1');
        await ledger.advance(run!.id, 'w1', Phase.composing);
        await ledger.advance(run!.id, 'w1', Phase.rendering, { job: { prompt: 'p' } });
        return run!.id;
      }

      it("stores a run's job once: the first handle stands, and a job is one run's only", async () => {
        const runId = await rendering();
        const first = await ledger.attachJob(runId, 'w1', JOB);
        expect(first).toEqual({
          held: true,
          job: { ...JOB, runId, createdAt: new Date(now).toISOString(), cancelRequestedAt: null },
        });
        // A second submit's handle (there must never be one) does not replace the first.
        expect((await ledger.attachJob(runId, 'w1', { ...JOB, jobId: 'pred_0002' })).job?.jobId).toBe('pred_0001');
        expect(await ledger.jobOf(runId)).toEqual(first.job);
        // Another run that finds the same orphan cannot adopt it.
        const other = await rendering('key-0002-other-run-xxxx');
        expect(await ledger.attachJob(other, 'w1', JOB)).toEqual({ job: null, held: true });
        expect(await ledger.jobOf(other)).toBeNull();
      });

      it('stores a handle learned by a holder that lost the run, and says it no longer holds it', async () => {
        const runId = await rendering();
        tick(LEASE_MS + 1);
        await ledger.claimRun(runId, 'w2');
        expect(await ledger.attachJob(runId, 'w1', JOB)).toMatchObject({ held: false, job: { jobId: 'pred_0001' } });
        expect((await ledger.jobOf(runId))?.jobId).toBe('pred_0001');
      });

      it('stores a webhook once however often it comes, announcing it once, and ignores those of no live run', async () => {
        const runId = await rendering();
        await ledger.attachJob(runId, 'w1', JOB);
        const heard: string[] = [];
        ledger.subscribe((change) => heard.push(change.runId));
        const delivery = { provider: 'replicate', webhookId: 'msg_1', runId, jobId: 'pred_0001', status: 'succeeded' };
        const outcomes = [];
        for (let i = 0; i < 5; i++) outcomes.push(await ledger.recordWebhook(delivery));
        expect(outcomes).toEqual([
          { kind: 'stored', runId },
          ...Array.from({ length: 4 }, () => ({ kind: 'duplicate', runId })),
        ]);
        expect(heard).toEqual([runId]);
        expect(await ledger.webhookDeliveries(runId)).toEqual([
          { ...delivery, receivedAt: new Date(now).toISOString() },
        ]);
        // Found by its job when the URL named no run; another job's webhook for this run is not its own.
        tick(1);
        expect(await ledger.recordWebhook({ ...delivery, webhookId: 'msg_2', runId: null })).toEqual({
          kind: 'stored',
          runId,
        });
        expect(await ledger.recordWebhook({ ...delivery, webhookId: 'msg_3', jobId: 'pred_9999' })).toEqual({
          kind: 'ignored',
          reason: 'other_job',
        });
        expect((await ledger.webhookDeliveries(runId)).map((d) => d.webhookId)).toEqual(['msg_2', 'msg_1']);
        expect(await ledger.recordWebhook({ ...delivery, webhookId: 'msg_4', runId: 'run_unknown' })).toEqual({
          kind: 'ignored',
          reason: 'unknown_run',
        });
        expect(
          await ledger.recordWebhook({ ...delivery, webhookId: 'msg_5', runId: null, jobId: 'pred_unknown' }),
        ).toEqual({ kind: 'ignored', reason: 'unknown_run' });
        await ledger.finish(runId, 'w1', { score: 1 });
        expect(await ledger.recordWebhook({ ...delivery, webhookId: 'msg_6' })).toEqual({
          kind: 'ignored',
          reason: 'finished_run',
        });
        expect(heard).toEqual([runId, runId, runId]);
      });

      it('keeps a webhook naming a run without a job yet: the holder adopts the orphan it names', async () => {
        const runId = await rendering();
        const outcome = await ledger.recordWebhook({
          provider: 'replicate',
          webhookId: 'msg_1',
          runId,
          jobId: 'pred_orphan',
          status: 'processing',
        });
        expect(outcome).toEqual({ kind: 'stored', runId });
        expect((await ledger.webhookDeliveries(runId))[0]?.jobId).toBe('pred_orphan');
      });

      it("hands a canceled run's job to one canceller only, and lists the cancels nobody has claimed", async () => {
        const runId = await rendering();
        await ledger.attachJob(runId, 'w1', JOB);
        expect(await ledger.claimJobCancel(runId)).toBeNull(); // not canceled
        expect(await ledger.jobsAwaitingCancel()).toEqual([]);
        await ledger.cancel('acme', runId);
        expect((await ledger.jobsAwaitingCancel()).map((j) => j.jobId)).toEqual(['pred_0001']);
        const claims = await Promise.all([
          ledger.claimJobCancel(runId),
          ledger.claimJobCancel(runId),
          ledger.claimJobCancel(runId),
        ]);
        expect(claims.filter((c) => c !== null)).toEqual([
          { ...JOB, runId, createdAt: expect.any(String), cancelRequestedAt: new Date(now).toISOString() },
        ]);
        expect(await ledger.jobsAwaitingCancel()).toEqual([]);
        // A handle stored after the cancel (the submit answered late) is still there to cancel.
        const late = await rendering('key-0003-late-handle-xx');
        await ledger.cancel('acme', late);
        expect(await ledger.attachJob(late, 'w1', { ...JOB, jobId: 'pred_late' })).toMatchObject({
          held: false,
          job: { jobId: 'pred_late' },
        });
        expect((await ledger.claimJobCancel(late))?.jobId).toBe('pred_late');
      });

      it('raises progress with a checkpoint and announces it; a checkpoint without progress announces nothing', async () => {
        const runId = await rendering();
        const heard: number[] = [];
        ledger.subscribe(() => heard.push(1));
        expect(await ledger.checkpoint(runId, 'w1', 'job/status', { state: 'processing' }, 0.6)).toBe(true);
        expect((await ledger.getRun('acme', runId)).progress).toBe(0.6);
        expect(await ledger.checkpoint(runId, 'w1', 'job/status', { state: 'processing' }, 0.55)).toBe(true);
        expect(await ledger.checkpoint(runId, 'w1', 'other', { x: 1 })).toBe(true);
        expect((await ledger.getRun('acme', runId)).progress).toBe(0.6);
        expect(heard).toHaveLength(1);
        expect(await ledger.checkpoint(runId, 'w2', 'job/status', { state: 'x' }, 0.9)).toBe(false);
      });

      it("forgets a run's job and webhooks with the run", async () => {
        const runId = await rendering();
        await ledger.attachJob(runId, 'w1', JOB);
        await ledger.recordWebhook({
          provider: 'replicate',
          webhookId: 'msg_1',
          runId,
          jobId: 'pred_0001',
          status: null,
        });
        await ledger.finish(runId, 'w1', { score: 1 });
        tick(RETENTION_MS + 1);
        await ledger.sweep();
        expect(await ledger.jobOf(runId)).toBeNull();
        expect(await ledger.webhookDeliveries(runId)).toEqual([]);
        // The job is free again for a run that (improbably) meets the same id.
        const again = await rendering('key-0004-after-retention');
        expect((await ledger.attachJob(again, 'w1', JOB)).job?.runId).toBe(again);
      });
    });
  });
}
