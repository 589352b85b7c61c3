// Lease holders that name their process: one that has died on this host is known at once, one that
// lives is never taken from, and one elsewhere waits out its lease. Real processes, on every backend.
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { holderGone, holderPid, processOwner, type RunLedger } from '../../src/ledger/index.js';
import { backends } from '../helpers/ledgers.js';
import { request } from './contract.js';

const children: ChildProcess[] = [];
const ledgers: RunLedger[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await Promise.all(ledgers.splice(0).map((l) => l.close()));
});

/** A process that lives until killed, and a lease owner id naming it. */
async function holder(): Promise<{ owner: string; kill(): Promise<void> }> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
  children.push(child);
  await new Promise((resolve) => child.once('spawn', resolve));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return { owner: processOwner('test', child.pid!), kill: () => (child.kill('SIGKILL'), exited) };
}

describe('holderGone', () => {
  it('knows a process of this host that has exited, or whose pid now names a process started later', async () => {
    const live = await holder();
    expect(holderGone(live.owner)).toBe(false);
    expect(holderGone(`${live.owner}/3`)).toBe(false);
    expect(holderPid(live.owner)).toBeGreaterThan(0);
    await live.kill();
    expect(holderGone(live.owner)).toBe(true);
    // This process's own pid, but with another start time: the pid was reused.
    const reused = processOwner('test').replace(
      /~(\d+)~([^~]+)$/,
      (_all, start: string, nonce: string) => `~${Number(start) + 1}~${nonce}`,
    );
    expect(holderGone(reused)).toBe(true);
    expect(holderGone(processOwner('test'))).toBe(false);
  });

  it('cannot know, and so never says gone, of another host, another boot, or an owner id of another form', () => {
    const self = processOwner('test').split('~');
    for (const [i, other] of [
      [1, 'another-host'],
      [2, '00000000-0000-0000-0000-000000000000'],
      [3, '1'],
    ] as const) {
      const elsewhere = [...self];
      elsewhere[i] = other;
      elsewhere[4] = '999999999';
      expect(holderGone(elsewhere.join('~'))).toBe(false);
    }
    expect(holderGone('w1')).toBe(false);
    expect(holderGone('host:123:abc/0')).toBe(false);
  });
});

describe.each(backends)('dead holders on $name', ({ open }) => {
  it('hands the run of a holder that died to claimRun and releaseDeadHolders at once, counting nothing against it', async () => {
    const ledger = await open({ leaseMs: 60_000 });
    ledgers.push(ledger);
    const [alive, dying] = [await holder(), await holder()];
    const kept = await ledger.start(request({ idempotencyKey: 'holder-key-alive-0001' }), alive.owner);
    const lost = await ledger.start(request({ idempotencyKey: 'holder-key-dying-0001' }), dying.owner);
    if (kept.kind !== 'created' || lost.kind !== 'created') throw new Error('expected two new runs');
    expect(await ledger.releaseDeadHolders()).toEqual([]);
    expect(await ledger.claimRun(kept.run.id, 'w1')).toBeNull();
    expect(await ledger.claimRun(lost.run.id, 'w1')).toBeNull();

    await dying.kill();
    expect(await ledger.claimRun(kept.run.id, 'w1')).toBeNull();
    expect(await ledger.claimRun(lost.run.id, 'w1')).toMatchObject({ attempts: 2, stalls: 0, lease: { holder: 'w1' } });
  });

  it("frees a dead holder's runs for any worker, announcing them, and leaves a live holder's alone", async () => {
    const ledger = await open({ leaseMs: 60_000 });
    ledgers.push(ledger);
    const [alive, dying] = [await holder(), await holder()];
    await ledger.createOrReplay(request({ idempotencyKey: 'holder-key-alive-0002' }));
    await ledger.createOrReplay(request({ idempotencyKey: 'holder-key-dying-0002' }));
    const kept = (await ledger.claim(`${alive.owner}/0`))!;
    const lost = (await ledger.claim(`${dying.owner}/1`))!;
    expect(await ledger.claim('w1')).toBeNull();
    await dying.kill();
    const heard: string[] = [];
    ledger.subscribe((change) => heard.push(change.runId));
    expect(await ledger.releaseDeadHolders(kept.id)).toEqual([]);
    expect(await ledger.releaseDeadHolders()).toEqual([lost.id]);
    expect(heard).toEqual([lost.id]);
    expect(await ledger.claim('w1')).toMatchObject({ id: lost.id, attempts: 2, stalls: 0 });
    expect(await ledger.claim('w2')).toBeNull();
    expect((await ledger.getRun('acme', kept.id)).lease?.holder).toBe(`${alive.owner}/0`);
  });
});
