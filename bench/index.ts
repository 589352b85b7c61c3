// `npm run bench`: every benchmark, each against a baseline measured in the same run. Not shipped:
// the package's files are dist/src and dist/tools only.
import { benchHttp } from './http-bench.js';
import { benchLedger } from './ledger-bench.js';
import { formatTable } from './measure.js';
import { benchPostgres, postgresReachable } from './postgres-bench.js';
import { benchProxy } from './proxy-bench.js';
import { benchReplicas } from './replica-bench.js';
import { benchStdio } from './stdio-bench.js';

async function runBench(): Promise<number> {
  process.stdout.write('Measuring the ledger (SQLite, WAL, synchronous=FULL) ...\n');
  process.stdout.write(formatTable('## Ledger operations per second', await benchLedger()) + '\n\n');
  process.stdout.write('Measuring MCP over stdio (child processes, the SDK client) ...\n');
  process.stdout.write(formatTable('## Create latency over stdio', await benchStdio()) + '\n\n');
  process.stdout.write('Measuring runledger proxy over stdio (its upstream called directly as the baseline) ...\n');
  process.stdout.write(formatTable('## runledger proxy over stdio', await benchProxy()) + '\n\n');
  process.stdout.write('Measuring MCP over Streamable HTTP (child processes, concurrent SDK client sessions) ...\n');
  process.stdout.write(formatTable('## Create throughput over Streamable HTTP', await benchHttp()) + '\n\n');
  if (await postgresReachable()) {
    process.stdout.write('Measuring the PostgreSQL ledger ...\n');
    process.stdout.write(formatTable('## PostgreSQL', await benchPostgres()) + '\n\n');
    process.stdout.write('Measuring replicas sharing PostgreSQL, each capped by a CPU quota (about 2 minutes) ...\n');
    const replicas = await benchReplicas();
    process.stdout.write(
      'skipped' in replicas
        ? `Replica scaling skipped: ${replicas.skipped}.\n\n`
        : formatTable('## Replicas sharing PostgreSQL, each capped by a CPU quota', replicas.rows) + '\n\n',
    );
  } else {
    process.stdout.write(
      'PostgreSQL benchmarks skipped: nothing answers at RUNLEDGER_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test).\n',
    );
  }
  return 0;
}

runBench().then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
