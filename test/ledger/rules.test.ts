// The ledger's decisions on their own: pure functions of a run record, no store.
import { describe, expect, it } from 'vitest';
import { Phase } from '../../src/ledger/index.js';
import {
  afterFailedAttempt,
  cancelDecision,
  checkCreate,
  checkListQuery,
  isClaimable,
  isExpired,
  judgeExisting,
  leasedTo,
  MAX_STALLS,
  moved,
  newRecord,
  pageOf,
  progressed,
  released,
  sameRecord,
  takeoverBackoffMs,
  toRun,
  usageOf,
  visible,
} from '../../src/ledger/rules.js';
import type { RunRecord } from '../../src/ledger/store.js';
import { request } from './contract.js';

const T0 = Date.UTC(2026, 0, 1);
const LEASE = 10_000;
const DAY = 24 * 3600 * 1000;
const FAILURE = { code: 'generation_failed', message: 'the render thread died (exit code 70)', details: {} } as const;

const fresh = (over: Partial<RunRecord> = {}): RunRecord => ({ ...newRecord(request(), 'fp', T0, LEASE), ...over });

describe('creates', () => {
  it('checks the names and the key before anything else, and takes the fingerprint given', () => {
    expect(checkCreate({ ...request(), fingerprint: 'given' })).toBe('given');
    expect(checkCreate(request())).toMatch(/^[0-9a-f]{64}$/);
    expect(() => checkCreate({ ...request(), tool: '' })).toThrow(/tool/);
    expect(() => checkCreate({ ...request(), idempotencyKey: 'short' })).toThrow(/idempotency_key/);
    expect(() => checkCreate({ ...request(), cost: 1.5 })).toThrow(/cost/);
  });

  it('starts a run queued and free, or leased to the worker that starts it, of the engine unless told', () => {
    expect(fresh()).toMatchObject({
      phase: 'queued',
      executor: 'engine',
      attempts: 0,
      leaseOwner: null,
      leaseExpiresAt: null,
      createdAt: T0,
    });
    const started = newRecord({ ...request(), executor: 'proxy' }, 'fp', T0, LEASE, 'proxy-1');
    expect(started).toMatchObject({
      executor: 'proxy',
      attempts: 1,
      leaseOwner: 'proxy-1',
      leaseExpiresAt: T0 + LEASE,
    });
    expect(started.id).toMatch(/^run_/);
  });

  it('judges an existing run: a replay, a conflict, a tombstone, or forgotten past retention once it has ended', () => {
    const run = fresh();
    expect(judgeExisting(run, 'fp', T0, 7 * DAY)).toBe('replay');
    expect(judgeExisting(run, 'other', T0, 7 * DAY)).toBe('conflict');
    expect(judgeExisting({ ...run, deletedAt: T0 }, 'fp', T0, 7 * DAY)).toBe('deleted');
    // A live run is never forgotten, however old; an ended or deleted one is, at the retention window.
    expect(isExpired(run, T0 + 30 * DAY, 7 * DAY)).toBe(false);
    expect(isExpired({ ...run, phase: 'done' }, T0 + 7 * DAY - 1, 7 * DAY)).toBe(false);
    expect(judgeExisting({ ...run, phase: 'done' }, 'fp', T0 + 7 * DAY, 7 * DAY)).toBe('expired');
    expect(isExpired({ ...run, deletedAt: T0 }, T0 + 7 * DAY, 7 * DAY)).toBe(true);
  });
});

describe('leases', () => {
  it('makes a run claimable when free, past its lease, or held by a holder known to be gone', () => {
    const held = leasedTo(fresh(), 'w1', T0, LEASE);
    expect(held).toMatchObject({ leaseOwner: 'w1', leaseExpiresAt: T0 + LEASE, attempts: 1, stalls: 0 });
    expect(isClaimable(fresh(), T0)).toBe(true);
    expect(isClaimable(held, T0 + LEASE - 1)).toBe(false);
    expect(isClaimable(held, T0 + LEASE)).toBe(true);
    expect(isClaimable(held, T0, (owner) => owner === 'w1')).toBe(true);
    expect(isClaimable(held, T0, () => false)).toBe(false);
    expect(isClaimable({ ...held, phase: 'done' }, T0 + LEASE)).toBe(false);
    expect(isClaimable({ ...held, deletedAt: T0 }, T0 + LEASE)).toBe(false);
    expect(released(held)).toMatchObject({ leaseOwner: null, leaseExpiresAt: null, attempts: 1 });
  });

  it('counts nothing against a run at a claim: a lease that ran out was its holder crashing', () => {
    let run = fresh();
    for (let i = 1; i <= 2 * MAX_STALLS; i++) run = leasedTo(run, `w${i}`, T0 + i * LEASE, LEASE);
    expect(run).toMatchObject({ attempts: 2 * MAX_STALLS, stalls: 0 });
  });

  it('retries a run whose attempts fail on it after a back-off growing from a tenth of the lease to ten leases', () => {
    expect([1, 2, 3, 4].map((k) => takeoverBackoffMs(k, LEASE))).toEqual([1000, 2000, 4000, 8000]);
    expect(takeoverBackoffMs(20, LEASE)).toBe(10 * LEASE);
    let run = leasedTo(fresh(), 'w1', T0, LEASE);
    for (let k = 1; k < MAX_STALLS; k++) {
      const after = afterFailedAttempt(run, FAILURE, T0, LEASE);
      expect(after.giveUp).toBeNull();
      expect(after.run).toMatchObject({
        stalls: k,
        leaseOwner: null,
        leaseExpiresAt: T0 + takeoverBackoffMs(k, LEASE),
      });
      expect(toRun(after.run, {}, null)).toMatchObject({
        lease: null,
        retryAt: new Date(T0 + takeoverBackoffMs(k, LEASE)).toISOString(),
      });
      expect(isClaimable(after.run, T0 + takeoverBackoffMs(k, LEASE) - 1)).toBe(false);
      run = leasedTo(after.run, `w${k + 1}`, T0 + takeoverBackoffMs(k, LEASE), LEASE);
    }
    const last = afterFailedAttempt(run, FAILURE, T0, LEASE);
    expect(last.run.stalls).toBe(MAX_STALLS);
    expect(last.giveUp).toEqual({
      code: 'generation_failed',
      message: `Gave up after ${MAX_STALLS} attempts, the last ${MAX_STALLS} of them failing in a row on the run itself; the last: ${FAILURE.message}`,
      details: { attempts: MAX_STALLS, failed_in_a_row: MAX_STALLS, phase: 'queued', last_failure: FAILURE },
    });
  });

  it('starts the count of failed attempts again at progress, and extends the lease', () => {
    const failed = afterFailedAttempt(leasedTo(fresh(), 'w1', T0, LEASE), FAILURE, T0, LEASE).run;
    const again = leasedTo(failed, 'w2', T0 + 1, LEASE);
    expect(progressed(again, 0.6, T0 + 5, LEASE)).toMatchObject({
      stalls: 0,
      progress: 0.6,
      leaseExpiresAt: T0 + 5 + LEASE,
    });
    expect(progressed({ ...again, progress: 0.7 }, 0.6, T0 + 5, LEASE).progress).toBe(0.7);
  });
});

describe('phase moves', () => {
  it('moves forward only, stamping each phase, and ends the lease and the recovery points with the run', () => {
    const run = leasedTo(fresh(), 'w1', T0, LEASE);
    const composing = moved(run, Phase.composing, T0 + 10, LEASE);
    expect(composing).toMatchObject({
      dropRecovery: false,
      charge: false,
      run: { phase: 'composing', composingAt: T0 + 10, progress: 0.25, leaseOwner: 'w1' },
    });
    const done = moved(composing.run, Phase.done, T0 + 20, LEASE);
    expect(done).toMatchObject({
      dropRecovery: true,
      charge: true,
      run: { phase: 'done', endedAt: T0 + 20, progress: 1, leaseOwner: null, leaseExpiresAt: null },
    });
    expect(toRun(done.run, {}, { ok: true }).phases.map((p) => p.phase)).toEqual(['queued', 'composing', 'done']);
    expect(() => moved(composing.run, Phase.queued, T0, LEASE)).toThrow(/cannot move/);
    expect(() => moved(done.run, Phase.failed, T0, LEASE)).toThrow(/cannot move/);
  });

  it('never stamps a time before the last write, even from a host whose clock is behind', () => {
    const run = { ...leasedTo(fresh(), 'w1', T0, LEASE), updatedAt: T0 + 1000 };
    expect(moved(run, Phase.composing, T0 + 10, LEASE).run).toMatchObject({
      composingAt: T0 + 1000,
      updatedAt: T0 + 1000,
    });
  });

  it('keeps the failure count on the failed run, and bills only done', () => {
    const failed = moved({ ...fresh(), stalls: 5 }, Phase.failed, T0, LEASE, FAILURE);
    expect(failed).toMatchObject({ charge: false, run: { stalls: 5, error: FAILURE } });
    expect(moved(fresh(), Phase.canceled, T0, LEASE).charge).toBe(false);
  });

  it('answers cancel by the phase: cancel a live run, say so of an ended one', () => {
    expect(
      ['queued', 'rendering', 'canceled', 'done', 'failed'].map((phase) => cancelDecision(phase as Phase)),
    ).toEqual(['cancel', 'cancel', 'already_canceled', 'already_finished', 'already_finished']);
  });
});

describe('reading', () => {
  it('shows a run only to its tenant, and a deleted one as deleted', () => {
    const run = fresh();
    expect(visible(run, 'acme', run.id)).toBe(run);
    expect(() => visible(run, 'globex', run.id)).toThrow(/not found/);
    expect(() => visible(undefined, 'acme', 'run_x')).toThrow(/not found/);
    expect(() => visible({ ...run, deletedAt: T0 }, 'acme', run.id)).toThrow(/deleted/);
  });

  it('tells a record unchanged from one that changed, errors compared by value', () => {
    const run = fresh({ error: { ...FAILURE, details: {} } });
    expect(sameRecord(run, { ...run, error: { ...FAILURE, details: {} } })).toBe(true);
    expect(sameRecord(run, { ...run, leaseExpiresAt: 1 })).toBe(false);
  });

  it('pages newest first with a cursor, and refuses a limit or cursor it did not make', () => {
    const runs = [3, 2, 1].map((i) => fresh({ id: `run_${i}`, createdAt: T0 + i }));
    const page = pageOf(runs, 2);
    expect(page.runs.map((r) => r.id)).toEqual(['run_3', 'run_2']);
    expect(checkListQuery({ cursor: page.nextCursor! }).before).toEqual({ createdAt: T0 + 2, id: 'run_2' });
    expect(pageOf(runs, 3).nextCursor).toBeNull();
    expect(() => checkListQuery({ limit: 101 })).toThrow(/limit/);
    expect(() => checkListQuery({ cursor: 'garbage' })).toThrow(/cursor/);
    expect(() => checkListQuery({ phase: 'lost' as Phase })).toThrow(/phase/);
  });

  it('sums usage by tool and by provider', () => {
    const usage = usageOf('acme', {
      runs: [
        { tool: 'product_shot', runs: 3, replays: 4 },
        { tool: 'social_card', runs: 1, replays: 0 },
      ],
      charges: [
        { tool: 'product_shot', provider: 'builtin', charges: 2, credits: 8 },
        { tool: 'product_shot', provider: 'openai', charges: 1, credits: 4 },
      ],
    });
    expect(usage).toEqual({
      tenant: 'acme',
      runs: 4,
      charges: 3,
      credits: 12,
      replaysAbsorbed: 4,
      byTool: {
        product_shot: { runs: 3, charges: 3, credits: 12, replaysAbsorbed: 4 },
        social_card: { runs: 1, charges: 0, credits: 0, replaysAbsorbed: 0 },
      },
      byProvider: { builtin: { charges: 2, credits: 8 }, openai: { charges: 1, credits: 4 } },
    });
  });
});
