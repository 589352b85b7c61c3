// A server SIGKILLed mid-run on this host: another server takes its run over at once, not when its
// 60-second lease would run out; while the holder lives, no one takes the run from it.
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { holderPid } from '../../src/ledger/index.js';
import { callTool, PRODUCT_SHOT, readLedger, startStdio, tempDb, until, type StdioServer } from '../helpers/mcp.js';

const servers: StdioServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close().catch(() => undefined)));
});

const LEASE_MS = 60_000;

async function start(db: string, flags: string[]): Promise<StdioServer> {
  const server = await startStdio(db, ['--lease-ms', String(LEASE_MS), '--concurrency', '1', ...flags]);
  servers.push(server);
  return server;
}

describe('a dead holder on this host', () => {
  it('has its run taken over well before its lease would expire; a live holder keeps its run', async () => {
    const db = tempDb();
    // Slow phases keep the run in the first server's hands for as long as the test needs.
    const first = await start(db, ['--phase-delay-ms', '600000']);
    const created = await callTool(first.client, 'create_product_shot', {
      ...PRODUCT_SHOT,
      idempotency_key: randomUUID(),
    });
    const runId = created.run.run_id;
    const held = await until(async () => {
      const run = await readLedger(db, (ledger) => ledger.getRun('local', runId));
      return run.lease !== null && run.phase === 'composing' ? run : undefined;
    }, 'the first server to hold the run');
    expect(holderPid(held.lease!.holder)).toBe(first.pid);

    // A second server, idle and polling for work, and a waiter of its own: neither takes a live holder's run.
    const second = await start(db, []);
    const waited = await callTool(second.client, 'poll_run', { run_id: runId, wait_seconds: 1 });
    expect(waited.run).toMatchObject({ phase: 'composing', attempts: 1 });
    expect(await readLedger(db, (ledger) => ledger.releaseDeadHolders())).toEqual([]);
    expect((await readLedger(db, (ledger) => ledger.getRun('local', runId))).lease?.holder).toBe(held.lease!.holder);

    const killedAt = Date.now();
    process.kill(first.pid, 'SIGKILL');
    const takenOver = await until(
      async () => {
        const polled = await callTool(second.client, 'poll_run', { run_id: runId });
        return polled.run.attempts >= 2 ? Date.now() - killedAt : undefined;
      },
      'the second server to take the run over',
      LEASE_MS,
    );
    process.stderr.write(`dead holder taken over ${takenOver} ms after its SIGKILL (lease ${LEASE_MS} ms)\n`);
    expect(takenOver).toBeLessThan(5000);

    const done = await callTool(second.client, 'poll_run', { run_id: runId, wait_seconds: 50 });
    expect(done.run).toMatchObject({ phase: 'done', billed: true, attempts: 2, stalls: 0 });
    expect(await readLedger(db, (ledger) => ledger.usage('local'))).toMatchObject({ runs: 1, charges: 1 });
  });
});
