// `runledger demo`: the server as a child over stdio, driven by the SDK's client the way an agent would:
// create, retry after a "timeout", a conflicting retry, follow the phases, save the images, show billing.
// Its runs go to a ledger of its own unless --db says otherwise: billed demo runs in the ledger a user
// serves from would show up later in their get_usage and list_runs.
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { DEMO_OUT_DIR } from './commands/table.js';
import type { DemoConfig } from './config.js';
import { isPostgresUrl, safeLedgerUrl } from './ledger/index.js';
import { VERSION } from './version.js';
import type { RunView } from './mcp/views.js';

const out = (line = '') => process.stdout.write(line + '\n');

/** A path as a shell reads it back: quoted when it holds anything but the plainest characters. */
const quoted = (text: string) => (/^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`);

function bar(progress: number, label: string): string {
  const width = 24;
  const filled = Math.round(progress * width);
  return `[${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${String(Math.round(progress * 100)).padStart(3)}% ${label}`;
}

/** The ledger as the child is told it: a file path made absolute, so that the lines printed work from anywhere. */
function ledgerArg(db: string): string {
  return isPostgresUrl(db) || db === ':memory:' || isAbsolute(db) ? db : resolve(db);
}

export async function runDemo(config: DemoConfig): Promise<number> {
  const cli = fileURLToPath(new URL('./cli.js', import.meta.url));
  const db = ledgerArg(config.db);
  const args = [
    cli,
    '--db',
    db,
    '--tenant',
    config.tenant,
    '--phase-delay-ms',
    String(config.phaseDelayMs),
    '--log-level',
    'warn',
  ];
  if (config.dbSchema !== undefined) args.push('--db-schema', config.dbSchema);
  if (config.dbPoolSize !== undefined) args.push('--db-pool-size', String(config.dbPoolSize));
  const transport = new StdioClientTransport({ command: process.execPath, args, stderr: 'inherit' });
  const client = new Client({ name: 'runledger-demo', version: VERSION });
  await client.connect(transport);
  try {
    return await script(client, { ...config, db });
  } finally {
    await client.close();
  }
}

async function call(
  client: Client,
  name: string,
  args: Record<string, unknown>,
  onProgress?: (p: number, m?: string) => void,
) {
  const result = (await client.callTool(
    { name, arguments: args },
    undefined,
    onProgress
      ? { onprogress: (p) => onProgress(p.progress, p.message), timeout: 120_000, resetTimeoutOnProgress: true }
      : undefined,
  )) as CallToolResult;
  return { result, data: (result.structuredContent ?? {}) as Record<string, unknown> };
}

async function script(client: Client, config: DemoConfig): Promise<number> {
  const key = randomUUID();
  const request = {
    brief: 'A matte ceramic mug on a pale oak table, morning light, room for a headline',
    product_name: 'Morning Mug',
    variants: 2,
    style: 'studio',
  };
  const whose = config.dbGiven ? 'the ledger you gave' : "the demo's own ledger (--db chooses another)";
  out(`runledger demo — runs go to ${whose}: ${safeLedgerUrl(config.db)}, tenant ${config.tenant}`);
  const before = (await call(client, 'get_usage', {})).data;

  out(`\n1. create_product_shot with a new idempotency_key ${key}`);
  const first = (await call(client, 'create_product_shot', { ...request, idempotency_key: key }))
    .data as unknown as RunView;
  out(`   → run ${first.run_id}, phase ${first.phase}, replayed ${first.replayed}`);

  out('\n2. The agent timed out and retries with the SAME key');
  const retry = (await call(client, 'create_product_shot', { ...request, idempotency_key: key }))
    .data as unknown as RunView;
  out(
    `   → run ${retry.run_id}, phase ${retry.phase}, replayed ${retry.replayed}  (${retry.run_id === first.run_id ? 'same run, no new work' : 'DIFFERENT RUN'})`,
  );

  out('\n3. A different request under that same key');
  const conflict = await call(client, 'create_product_shot', {
    ...request,
    brief: 'A teapot instead',
    idempotency_key: key,
  });
  const error = (conflict.data.error ?? {}) as { code?: string; message?: string };
  out(`   → refused: ${error.code} — ${error.message}`);

  out('\n4. Following the run (poll_run with wait_seconds and progress notifications)');
  const tty = process.stdout.isTTY === true;
  let lastLine = '';
  const finished = (
    await call(client, 'poll_run', { run_id: first.run_id, wait_seconds: 50 }, (progress, message) => {
      const line = bar(progress, message?.split(' ')[0] ?? '');
      if (line === lastLine) return;
      lastLine = line;
      if (tty) process.stdout.write(`\r   ${line}`);
      else out(`   ${line}`);
    })
  ).data as unknown as RunView;
  if (tty) out();
  out(`   → ${finished.phase}`);
  for (const p of finished.phases) out(`     ${p.at}  ${p.phase}`);
  if (finished.phase !== 'done') {
    out(`The run ended ${finished.phase}: ${finished.error?.message ?? ''}`);
    return 1;
  }

  const dir = resolve(DEMO_OUT_DIR);
  mkdirSync(dir, { recursive: true });
  out(`\n5. Saving the images to ${dir}`);
  for (const asset of finished.assets) {
    const read = await client.readResource({ uri: asset.uri });
    const content = read.contents[0];
    const bytes = Buffer.from(content && 'blob' in content ? content.blob : '', 'base64');
    const sha = createHash('sha256').update(bytes).digest('hex');
    const file = join(dir, `${finished.run_id}-${asset.n}.png`);
    writeFileSync(file, bytes);
    const variant = (finished.evaluation?.variants as { n: number; score: number }[] | undefined)?.find(
      (v) => v.n === asset.n,
    );
    out(
      `   ${file}  ${asset.width}×${asset.height}  sha256 ${sha === asset.sha256 ? 'verified' : 'MISMATCH'}  brand score ${variant?.score.toFixed(2) ?? 'n/a'}`,
    );
  }

  out('\n6. One more retry after it finished');
  const late = (await call(client, 'create_product_shot', { ...request, idempotency_key: key }))
    .data as unknown as RunView;
  out(
    `   → run ${late.run_id}, replayed ${late.replayed}, same images: ${late.assets.map((a) => a.sha256).join() === finished.assets.map((a) => a.sha256).join()}`,
  );

  const after = (await call(client, 'get_usage', {})).data;
  const delta = (field: string) => Number(after[field]) - Number(before[field]);
  out('\nSummary');
  out(`   calls to create_product_shot: 4 (1 new, 2 replays, 1 refused)`);
  out(
    `   runs created: ${delta('runs')}   charges: ${delta('charges')} (${delta('credits')} credits)   replays absorbed: ${delta('replays_absorbed')}`,
  );
  out(`   → one run, billed once. Brand score ${Number(finished.evaluation?.score ?? 0).toFixed(2)}.`);
  const schema = config.dbSchema === undefined ? '' : ` --db-schema ${config.dbSchema}`;
  out(
    `\nThe run is in ${safeLedgerUrl(config.db)}: runledger runs list --db ${quoted(safeLedgerUrl(config.db))}${schema}`,
  );
  const ok =
    delta('runs') === 1 &&
    delta('charges') === 1 &&
    late.run_id === first.run_id &&
    retry.replayed &&
    error.code === 'idempotency_key_reused';
  return ok ? 0 : 1;
}
