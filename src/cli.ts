#!/usr/bin/env node
// One entry: serve over stdio (default) or HTTP, proxy, record/replay, demo, runs list/show, providers check/schema.
// Heavy modules (the SDK, zod, the renderer) load only for the command that needs them, so --help and
// bad flags answer at once.
import { parseConfig, USAGE, UsageError, type Config } from './config.js';
import { asRunledgerError } from './errors.js';
import { createLogger } from './log.js';
import { VERSION } from './version.js';

async function runsCommand(config: Config): Promise<void> {
  const { openLedger, isBilled } = await import('./ledger/index.js');
  const { RunService } = await import('./runs.js');
  const { runView } = await import('./mcp/views.js');
  const ledger = await openLedger({ url: config.db, schema: config.dbSchema, poolSize: config.dbPoolSize });
  const runs = new RunService(ledger);
  try {
    if (config.command === 'runs-show') {
      const run = await runs.get(config.tenant, config.rest[0]!);
      process.stdout.write(JSON.stringify(runView(run, false), null, 2) + '\n');
      return;
    }
    const { tool, phase, limit, cursor } = config.list!;
    const page = await runs.list(config.tenant, { tool, phase, limit, cursor });
    if (page.runs.length === 0) process.stdout.write(`No runs for tenant ${config.tenant} in ${ledger.describe()}\n`);
    for (const run of page.runs) {
      const billed = isBilled(run.phase) ? `billed ${run.cost}` : 'not billed';
      process.stdout.write(`${run.id}  ${run.tool.padEnd(14)} ${run.phase.padEnd(10)} ${run.createdAt}  ${billed.padEnd(10)}  key ${run.idempotencyKey}\n`);
    }
    // On stderr, so that stdout stays one run a line for scripts.
    if (page.nextCursor !== null) process.stderr.write(`More: runledger runs list --cursor ${page.nextCursor}\n`);
  } finally {
    runs.close();
    await ledger.close();
  }
}

function usageFailure(err: unknown, help = 'runledger --help'): number {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`runledger: ${err.message}\nRun "${help}" for usage.\n`);
  return 2;
}

/** record and replay take their own flags and help; everything after record's "--" belongs to the server. */
async function harnessCommand(command: 'record' | 'replay', args: string[]): Promise<number> {
  const ownArgs = command === 'record' && args.includes('--') ? args.slice(0, args.indexOf('--')) : args;
  if (ownArgs.includes('--help') || ownArgs.includes('-h')) {
    const { RECORD_USAGE, REPLAY_USAGE } = await import('./harness/usage.js');
    process.stdout.write(command === 'record' ? RECORD_USAGE : REPLAY_USAGE);
    return 0;
  }
  const schema = command === 'record' ? (ownArgs.includes('--schema') ? 'transcript' : undefined) : ownArgs.includes('--report-schema') ? 'report' : ownArgs.includes('--profile-schema') ? 'profile' : undefined;
  if (schema !== undefined) {
    const { jsonSchema } = await import('./harness/schemas.js');
    process.stdout.write(JSON.stringify(jsonSchema(schema), null, 2) + '\n');
    return 0;
  }
  const { parseRecordArgs, parseReplayArgs } = await import('./harness/options.js');
  try {
    if (command === 'record') {
      const options = parseRecordArgs(args);
      const { runRecord } = await import('./harness/record.js');
      return await runRecord(options, createLogger('warn'));
    }
    const options = parseReplayArgs(args);
    const { runReplay } = await import('./harness/replay.js');
    return await runReplay(options);
  } catch (err) {
    return usageFailure(err, `runledger ${command} --help`);
  }
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'record' || argv[0] === 'replay') return harnessCommand(argv[0], argv.slice(1));
  if (argv[0] === 'providers') return (await import('./providers/command.js')).providersCommand(argv.slice(1));
  let config: Config;
  try {
    config = parseConfig(argv);
  } catch (err) {
    return usageFailure(err);
  }
  const log = createLogger(config.logLevel);
  switch (config.command) {
    case 'help':
      process.stdout.write(USAGE);
      return 0;
    case 'version':
      process.stdout.write(`runledger ${VERSION}\n`);
      return 0;
    case 'serve':
    case 'proxy': {
      const open = config.command === 'proxy' ? (await import('./proxy/index.js')).createProxyRuntime : undefined;
      if (config.http !== null) {
        const { serveHttp } = await import('./transports/http.js');
        const handle = await serveHttp(config, config.http, log, open);
        const stop = (signal: string) => {
          log.info(`shutting down (${signal}): finishing in-flight requests`);
          void handle.close().finally(() => process.exit(0));
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
        return -1;
      }
      const { serveStdio } = await import('./transports/stdio.js');
      await serveStdio(config, log, open);
      return -1; // keeps running until stdin closes or a signal arrives
    }
    case 'runs-list':
    case 'runs-show':
      await runsCommand(config);
      return 0;
    case 'demo': {
      const { runDemo } = await import('./demo.js');
      return runDemo(config);
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`runledger: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    const e = asRunledgerError(err);
    process.stderr.write(`runledger: ${e.code}: ${e.message}\n${e.fix}\n`);
    process.exitCode = 1;
  },
);
