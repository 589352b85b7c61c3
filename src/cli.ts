#!/usr/bin/env node
// One entry: serve over stdio (default) or HTTP, proxy, record/replay, demo, runs list/show, providers check/schema.
// Heavy modules (the SDK, zod, the renderer) load only for the command that needs them, so --help and
// bad flags answer at once.
import { helpFor, UsageError } from './command-line.js';
import { helpText } from './commands/help.js';
import { parseConfig, type Config, type RunsListConfig, type RunsShowConfig, type ServingConfig } from './config.js';
import { asRunledgerError } from './errors.js';
import { createLogger, type Logger } from './log.js';
import type { Serving } from './runtime.js';
import { VERSION } from './version.js';

async function runsCommand(config: RunsListConfig | RunsShowConfig): Promise<void> {
  const { openLedger, isBilled } = await import('./ledger/index.js');
  const { RunService } = await import('./runs.js');
  const { runView } = await import('./mcp/views.js');
  const ledger = await openLedger({ url: config.db, schema: config.dbSchema, poolSize: config.dbPoolSize });
  const runs = new RunService(ledger);
  try {
    if (config.command === 'runs-show') {
      const run = await runs.get(config.tenant, config.runId);
      process.stdout.write(JSON.stringify(runView(run, false), null, 2) + '\n');
      return;
    }
    const page = await runs.list(config.tenant, config.list);
    if (page.runs.length === 0) process.stdout.write(`No runs for tenant ${config.tenant} in ${ledger.describe()}\n`);
    for (const run of page.runs) {
      const billed = isBilled(run.phase) ? `billed ${run.cost}` : 'not billed';
      process.stdout.write(
        `${run.id}  ${run.tool.padEnd(14)} ${run.phase.padEnd(10)} ${run.createdAt}  ${billed.padEnd(10)}  key ${run.idempotencyKey}\n`,
      );
    }
    // On stderr, so that stdout stays one run a line for scripts.
    if (page.nextCursor !== null) process.stderr.write(`More: runledger runs list --cursor ${page.nextCursor}\n`);
  } finally {
    runs.close();
    await ledger.close();
  }
}

function usageFailure(err: unknown): number {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`runledger: ${err.message}\nRun "${helpFor(err)}" for usage.\n`);
  return 2;
}

/** record and replay read their own flags (checked against the table already) in src/harness. */
async function harnessCommand(command: 'record' | 'replay', args: string[]): Promise<number> {
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
    if (err instanceof UsageError) err.command ??= command;
    return usageFailure(err);
  }
}

/** Serves MCP over stdio or HTTP: runledger itself, or the proxy. Answers -1: it runs until stopped. */
async function serve<C extends ServingConfig>(
  config: C,
  open: (config: C, log: Logger) => Promise<Serving>,
): Promise<number> {
  const log = createLogger(config.logLevel);
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

async function main(argv: string[]): Promise<number> {
  let config: Config;
  try {
    config = parseConfig(argv);
  } catch (err) {
    return usageFailure(err);
  }
  switch (config.command) {
    case 'help':
      process.stdout.write(
        config.topics.length === 0 ? helpText(undefined) : config.topics.map((topic) => helpText(topic)).join('\n'),
      );
      return 0;
    case 'version':
      process.stdout.write(`runledger ${VERSION}\n`);
      return 0;
    case 'schema': {
      const { jsonSchema } = await import('./harness/schemas.js');
      process.stdout.write(JSON.stringify(jsonSchema(config.schema), null, 2) + '\n');
      return 0;
    }
    case 'record':
    case 'replay':
      return harnessCommand(config.command, config.args);
    case 'serve':
      return serve(config, (await import('./runtime.js')).createRuntime);
    case 'proxy':
      return serve(config, (await import('./proxy/index.js')).createProxyRuntime);
    case 'runs-list':
    case 'runs-show':
      await runsCommand(config);
      return 0;
    case 'demo': {
      const { runDemo } = await import('./demo.js');
      return runDemo(config);
    }
    case 'providers-check':
      return (await import('./providers/command.js')).providersCheck(config.file);
    case 'providers-schema':
      return (await import('./providers/command.js')).providersSchema();
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
