// runledger demo as a newcomer runs it: its runs go to a ledger of its own, never the one served from.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI } from '../helpers/mcp.js';

describe('runledger demo', () => {
  it('keeps its billed run in runledger-out/demo.db, says so, and leaves the user ledger alone', () => {
    const cwd = mkdtempSync(join(tmpdir(), 'rl-demo-'));
    const data = join(cwd, 'data');
    const env: NodeJS.ProcessEnv = { ...process.env, XDG_DATA_HOME: data };
    delete env.RUNLEDGER_DB;
    const demo = spawnSync(process.execPath, [CLI, 'demo', '--phase-delay-ms', '0'], { cwd, env, encoding: 'utf8' });
    expect(demo.stderr).toBe('');
    expect(demo.status).toBe(0);
    const own = join(cwd, 'runledger-out', 'demo.db');
    expect(demo.stdout).toContain(`the demo's own ledger (--db chooses another): ${own}`);
    expect(demo.stdout).toContain(`runledger runs list --db ${own}`);
    expect(existsSync(join(data, 'runledger'))).toBe(false);

    const list = spawnSync(process.execPath, [CLI, 'runs', 'list', '--db', own], { cwd, env, encoding: 'utf8' });
    expect(list.stdout.trim().split('\n')).toHaveLength(1);
    expect(list.stdout).toMatch(/product_shot\s+done\s+\S+\s+billed 8/);
  });
});
