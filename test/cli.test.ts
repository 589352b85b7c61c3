// The CLI as a user types it: flags, bad values, and reading the ledger.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { helpText } from '../src/commands/help.js';
import { defaultDbPath } from '../src/commands/ledger-flags.js';
import { COMMAND_NAMES, COMMANDS, FLAGS, flagsOf } from '../src/commands/table.js';
import { parseConfig, type Config } from '../src/config.js';
import { openSqliteLedger } from '../src/ledger/sqlite/store.js';
import { CLI, tempDb } from './helpers/mcp.js';

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, input: '' });
}

describe('runledger CLI', () => {
  it.each([
    [['--bogus'], /Unknown option '--bogus'/],
    [['--concurrency', 'lots'], /--concurrency must be a whole number from 0 to 32, got "lots"/],
    [['--concurrency', '33'], /--concurrency must be from 0 to 32, got 33/],
    [['--phase-delay-ms', '-5'], /--phase-delay-ms/],
    [['--tenant', 'has space'], /--tenant must be/],
    [['--log-level', 'loud'], /--log-level must be/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['runs', 'show'], /runs show takes exactly one run id/],
    [['--port', '8080'], /--port goes with --http/],
    [['--http', '--port', '70000'], /--port must be from 0 to 65535/],
    [['--http', 'demo'], /--http goes with runledger serve or runledger proxy, not with runledger demo/],
    [['--max-sessions', '10'], /--max-sessions goes with --http/],
    [['--http', '--body-timeout-ms', '500'], /--body-timeout-ms must be from 1000 to 600000, got 500/],
    [['--http', '--max-tenant-sessions', '0'], /--max-tenant-sessions must be from 1 to 1000000/],
    [['--db', 'x.db', 'replay', 't.jsonl'], /replay goes first, before its flags/],
    [
      ['--provider', 'midjourney'],
      /--provider must be builtin or openai \(or a job provider defined with --provider-file\), got "midjourney"/,
    ],
    [['--provider-for', 'product_shot'], /--provider-for takes TOOL=PROVIDER/],
    [['--provider-sizes', '1024'], /--provider-sizes takes WxH sizes/],
    [['--provider-url', 'ftp://x'], /--provider-url must be an http\(s\) URL/],
    [['proxy'], /runledger proxy needs one upstream: a command after "--"/],
    [['proxy', '--upstream-url', 'http://127.0.0.1:1/mcp', '--', 'node', 's.js'], /runledger proxy needs one upstream/],
    [['proxy', 'node', 's.js'], /the upstream command goes after "--"/],
    [['proxy', '--upstream-url', 'mcp.example.com'], /--upstream-url must be an http\(s\) URL/],
    [['proxy', '--fence', 'a', '--pass', 'a', '--', 'node'], /a is in both --fence and --pass/],
    [['--fence', 'send_email'], /--fence goes with runledger proxy/],
    [['--', 'node', 's.js'], /a command after "--" goes with runledger proxy/],
    [['proxy', '--wait-seconds', '301', '--', 'node'], /--wait-seconds must be from 0 to 300/],
    [
      ['runs', 'list', '--phase', 'finished'],
      /--phase must be one of queued, composing, rendering, done, failed, canceled, got "finished"/,
    ],
    [['runs', 'list', '--limit', '0'], /--limit must be from 1 to 100, got 0/],
    [['--tool', 'product_shot'], /--tool goes with runledger runs list/],
    [['--public-url', 'example.com'], /--public-url must be an http\(s\) URL, got "example.com"/],
    [['--public-url', 'https://example.com/?x=1'], /--public-url is a base URL, without query or fragment/],
    [['--orphan-search-ms', '10'], /--orphan-search-ms must be from 1000 to 86400000, got 10/],
    [['--max-output-bytes', '1'], /--max-output-bytes must be from 1024 to 1073741824, got 1/],
    [
      ['--provider-file', 'replicate', '--provider', 'Replicate!'],
      /--provider must be builtin or openai, or the name of a provider a --provider-file defines, got "Replicate!"/,
    ],
    [
      ['proxy', '--provider-file', 'replicate', '--', 'node'],
      /--provider-file goes with runledger serve, not with runledger proxy/,
    ],
  ])('exits 2 with a clear message for %j', (args, message) => {
    const result = cli(args);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toMatch(/Run "runledger (\S+ )*--help" for usage/);
    expect(result.stdout).toBe('');
  });

  it('refuses to start a provider without its key, or for a tool that does not exist, naming what is missing', () => {
    const noKey = cli(
      ['--provider-for', 'social_card=openai', '--provider-key-env', 'NO_SUCH_KEY_VAR', '--db', tempDb()],
      { NO_SUCH_KEY_VAR: '' },
    );
    expect(noKey.status).toBe(2);
    expect(noKey.stderr).toMatch(/needs its API key in the environment variable NO_SUCH_KEY_VAR, which is not set/);
    const noTool = cli(['--provider-for', 'video=openai', '--db', tempDb()], { OPENAI_API_KEY: 'sk-x' });
    expect(noTool.status).toBe(2);
    expect(noTool.stderr).toMatch(
      /--provider-for names no tool "video"; the tools are product_shot, social_card, product_video/,
    );
  });

  it('refuses to start a job provider that is unknown, without its key or its webhook secret, or that cannot serve the tool given it', () => {
    const db = tempDb();
    const refused = (args: string[], env: NodeJS.ProcessEnv = {}) => {
      const result = cli([...args, '--db', db], env);
      expect(result.status).toBe(2);
      return result.stderr;
    };
    expect(refused(['--provider-for', 'product_video=replicate'])).toMatch(
      /--provider-for must be builtin or openai \(or a job provider defined with --provider-file\), got "replicate"/,
    );
    expect(refused(['--provider-file', 'fal', '--provider-for', 'product_video=replicate'])).toMatch(
      /no provider is named "replicate": the providers are builtin, fal/,
    );
    expect(refused(['--provider-file', '/nowhere/def.json'])).toMatch(
      /--provider-file \/nowhere\/def\.json: \(the file\): cannot be read/,
    );
    expect(
      refused(['--provider-file', 'replicate', '--provider-for', 'product_video=replicate'], {
        REPLICATE_API_TOKEN: '',
      }),
    ).toMatch(
      /the replicate provider \(.*replicate\.json\) needs its API key in the environment variable REPLICATE_API_TOKEN, which is not set/,
    );
    expect(
      refused(
        [
          '--provider-file',
          'replicate',
          '--provider-for',
          'product_video=replicate',
          '--http',
          '--port',
          '0',
          '--public-url',
          'https://rl.example',
        ],
        {
          REPLICATE_API_TOKEN: 'r8_x',
          REPLICATE_WEBHOOK_SECRET: '',
        },
      ),
    ).toMatch(
      /webhooks are signed with the secret in REPLICATE_WEBHOOK_SECRET, which is not set: set it, or leave out --public-url/,
    );
    expect(
      refused(['--provider-file', 'replicate', '--provider-for', 'social_card=replicate'], {
        REPLICATE_API_TOKEN: 'r8_x',
      }),
    ).toMatch(
      /the replicate provider cannot serve social_card: its definition uses \{request\.duration_seconds\}, \{request\.image\}, which social_card does not give/,
    );
  });

  it('checks a provider definition: what it understood (exit 0), or each wrong field by name (exit 2)', () => {
    const good = cli(['providers', 'check', 'replicate']);
    expect(good.status).toBe(0);
    expect(good.stdout).toMatch(/replicate\.json: a valid provider definition\nreplicate \(Replicate predictions/);
    expect(good.stdout).toMatch(
      /submit {4}POST \{base_url\}\/models\/\{model\}\/predictions\n {12}request fields used: aspect, duration_seconds, image, prompt, seed/,
    );
    expect(good.stdout).toMatch(
      /idempotency keys: not honoured: a run submits once, and a lost handle is looked for, never re-sent blindly/,
    );
    expect(good.stdout).toMatch(/webhooks {2}standard-webhooks \(secret in \$REPLICATE_WEBHOOK_SECRET/);
    expect(cli(['providers', 'check', 'fal']).status).toBe(0);

    const dir = mkdtempSync(join(tmpdir(), 'runledger-def-'));
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- a definition edited field by field to break it
    type Editable = Record<string, any>;
    const shipped = JSON.parse(
      readFileSync(new URL('../providers/replicate.json', import.meta.url), 'utf8'),
    ) as Editable;
    const write = (name: string, value: unknown) => {
      const file = join(dir, name);
      writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value));
      return file;
    };
    const broken = structuredClone(shipped);
    broken.submit.method = 'FETCH';
    delete broken.status.done;
    broken.outputs.pth = 'output';
    const bad = cli(['providers', 'check', write('broken.json', broken)]);
    expect(bad.status).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(/broken\.json is not a valid provider definition:\n/);
    expect(bad.stderr).toMatch(
      /^ {2}submit\.method: Invalid option: expected one of "GET"\|"POST"\|"PUT"\|"PATCH"\|"DELETE"$/m,
    );
    expect(bad.stderr).toMatch(/^ {2}status\.done: is missing \(expected array, received undefined\)$/m);
    expect(bad.stderr).toMatch(/^ {2}outputs\.pth: is not a field of a provider definition \(misspelt\?\)$/m);

    const crossed = structuredClone(shipped);
    crossed.cancel.url = '{base_url}/predictions/{job.cancel_url}';
    crossed.status.running = ['processing', 'succeeded'];
    const wrong = cli(['providers', 'check', write('crossed.json', crossed)]);
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toMatch(
      /^ {2}cancel\.url: \{job\.cancel_url\} is not captured: the job has "id" and "web_url" \(add it to submit\.response\.capture\)$/m,
    );
    expect(wrong.stderr).toMatch(/^ {2}status\.running\[1\]: "succeeded" is also in status\.done$/m);
    expect(cli(['providers', 'check', write('not.json', '{ nope')]).stderr).toMatch(/\(the file\): is not JSON/);

    const schema = cli(['providers', 'schema']);
    expect(schema.status).toBe(0);
    // The published schema is the one in the repository, next to the shipped definitions.
    expect(JSON.parse(schema.stdout)).toEqual(
      JSON.parse(readFileSync(new URL('../providers/definition.schema.json', import.meta.url), 'utf8')),
    );
  });

  it('names the PostgreSQL server it cannot reach, never the password, and exits', () => {
    // Port 1 on loopback: nothing listens there.
    const url = 'postgres://runledger:s3cret-pass@127.0.0.1:1/ledger';
    for (const args of [
      ['--db', url],
      ['runs', 'list', '--db', url],
    ]) {
      const result = cli(args);
      expect(result.status).toBe(1);
      expect(result.stderr).toMatch(/storage_unavailable: The PostgreSQL ledger at 127\.0\.0\.1:1 is unavailable/);
      expect(result.stderr + result.stdout).not.toContain('s3cret-pass');
    }
    expect(cli(['--db', 'x.db', '--db-schema', 'other']).stderr).toMatch(/--db-schema goes with a PostgreSQL --db/);
    expect(cli(['--db', url, '--db-schema', 'Bad-Name']).stderr).toMatch(/--db-schema must be lower-case letters/);
  });

  it('names an upstream server that will not start, and exits before serving', () => {
    const result = cli(['proxy', '--db', tempDb(), '--', process.execPath, '-e', 'process.exit(3)']);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(
      /upstream_unavailable: Could not reach the upstream MCP server \(.* -e process\.exit\(3\)\)/,
    );
    expect(result.stdout).toBe('');
  });

  it('loads no PostgreSQL driver when the ledger is a SQLite file', () => {
    // pg is a CommonJS package: whatever loads it shows in the CommonJS module cache.
    const script = `
      import { createRequire } from 'node:module';
      const { createRuntime } = await import(${JSON.stringify(new URL('../dist/src/runtime.js', import.meta.url).href)});
      const { parseConfig } = await import(${JSON.stringify(new URL('../dist/src/config.js', import.meta.url).href)});
      const { silentLogger } = await import(${JSON.stringify(new URL('../dist/src/log.js', import.meta.url).href)});
      const runtime = await createRuntime(parseConfig(['--db', ':memory:']), silentLogger);
      await runtime.shutdown();
      const loaded = Object.keys(createRequire(import.meta.url).cache);
      process.stdout.write(JSON.stringify({ modules: loaded.length, pg: loaded.filter((m) => /node_modules.pg/.test(m)) }));
    `;
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    const seen = JSON.parse(result.stdout) as { modules: number; pg: string[] };
    expect(seen.modules).toBeGreaterThan(0); // the cache is the right one: better-sqlite3 is in it
    expect(seen.pg).toEqual([]);
  });

  it('refuses to serve HTTP beyond loopback without tokens', () => {
    const result = cli(['--http', '--host', '0.0.0.0', '--db', tempDb()], { RUNLEDGER_TOKENS: '' });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/refusing to serve on 0\.0\.0\.0 without tokens/);
  });

  it('prints the commands and then the flags of serve for --help', () => {
    const result = cli(['--help']);
    expect(result.status).toBe(0);
    for (const command of [
      'runledger serve',
      'runledger proxy',
      'runledger demo',
      'runledger runs list',
      'runledger runs show',
      'runledger record',
      'runledger replay',
    ]) {
      expect(result.stdout).toContain(command);
    }
    expect(result.stdout).toContain('runledger record --help');
    expect(result.stdout).toContain('--max-tenant-sessions');
    // record and replay have help of their own, flags and all, whatever follows record's "--".
    expect(cli(['record', '-h', '--', 'server', '--help']).stdout).toMatch(
      /^runledger record — [^]*--out FILE[^]*--schema/,
    );
    expect(cli(['runs', 'list', '--help']).stdout).toMatch(/^runledger runs list — [^]*--cursor C/);
  });

  // The flag lines of a help text: "  --db PATH|URL  ..." or "  -h, --help  ...".
  const flagsIn = (help: string) => [...help.matchAll(/^ {2}(?:-\w, )?--([a-z][a-z-]*)/gm)].map((m) => m[1]);

  it.each(COMMAND_NAMES)(
    'lists in "%s --help" exactly the flags the table gives that command, each once',
    (command) => {
      const words = COMMANDS[command].words;
      const result = cli([...words, '--help']);
      expect(result.status).toBe(0);
      expect(result.stdout).toBe(helpText(command));
      expect(flagsIn(result.stdout)).toEqual(flagsOf(command));
    },
  );

  it('lists in runledger --help the flags of serve, which runs with no command', () => {
    expect(flagsIn(helpText(undefined))).toEqual(flagsOf('serve'));
  });

  it('gives every flag of the table to some command, and every command help and version', () => {
    const given = new Set(COMMAND_NAMES.flatMap((command) => flagsOf(command)));
    expect([...given].sort()).toEqual(Object.keys(FLAGS).sort());
    for (const command of COMMAND_NAMES) expect(flagsOf(command)).toEqual(expect.arrayContaining(['help', 'version']));
  });

  it.each([
    [['runs', 'list', '--concurrency', '3'], /--concurrency goes with runledger serve, not with runledger runs list/],
    [
      ['replay', 't.jsonl', '--db', 'x.db'],
      /--db goes with runledger serve, runledger proxy, runledger demo, runledger runs list or runledger runs show, not with runledger replay/,
    ],
    [['record', '--seed', '1', '--', 'node'], /--seed goes with runledger replay, not with runledger record/],
    [['proxy', '--provider', 'openai', '--', 'node'], /--provider goes with runledger serve, not with runledger proxy/],
    [['runs', 'list', '--limit', 'x'], /--limit must be a whole number from 1 to 100, got "x"/],
  ])('refuses a flag of another command, naming where it goes, for %j', (args, message) => {
    const result = cli(args);
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stdout).toBe('');
  });

  it('names the environment variable that gave a bad value', () => {
    const result = cli(['--db', 'postgres://127.0.0.1:1/x'], { RUNLEDGER_DB_POOL_SIZE: '500' });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/--db-pool-size \(from RUNLEDGER_DB_POOL_SIZE\) must be from 1 to 100, got 500/);
  });

  it('lists and shows runs from the ledger, and names a missing run', async () => {
    const db = tempDb();
    const ledger = await openSqliteLedger({ path: db });
    const created = await ledger.createOrReplay({
      tenant: 'local',
      tool: 'social_card',
      idempotencyKey: 'cli-test-key-000001',
      args: { headline: 'x' },
      cost: 2,
    });
    await ledger.close();
    const runId = created.kind === 'created' ? created.run.id : '';
    const list = cli(['runs', 'list', '--db', db]);
    expect(list.status).toBe(0);
    expect(list.stdout).toContain(runId);
    expect(list.stdout).toContain('key cli-test-key-000001');
    const show = cli(['runs', 'show', runId], { RUNLEDGER_DB: db });
    expect(JSON.parse(show.stdout)).toMatchObject({ run_id: runId, phase: 'queued' });
    const missing = cli(['runs', 'show', 'run_missing', '--db', db]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/not_found: Run run_missing was not found/);
  });

  it('filters runs list by tool and phase, and pages it with --limit and the --cursor it prints', async () => {
    const db = tempDb();
    const ledger = await openSqliteLedger({ path: db });
    const keys = ['cli-page-key-000001', 'cli-page-key-000002', 'cli-page-key-000003'];
    for (const [i, key] of keys.entries()) {
      await ledger.createOrReplay({
        tenant: 'local',
        tool: i === 2 ? 'send_email' : 'social_card',
        idempotencyKey: key,
        args: { n: i },
        cost: 0,
      });
    }
    await ledger.close();
    const keysIn = (stdout: string) =>
      stdout
        .trim()
        .split('\n')
        .map((line) => line.split(' key ')[1] ?? line);

    const emails = cli(['runs', 'list', '--db', db, '--tool', 'send_email', '--phase', 'queued']);
    expect(keysIn(emails.stdout)).toEqual(['cli-page-key-000003']);
    expect(cli(['runs', 'list', '--db', db, '--phase', 'done']).stdout).toMatch(/^No runs for tenant local/);

    const seen: string[] = [];
    let cursor: string[] = [];
    for (;;) {
      const page = cli(['runs', 'list', '--db', db, '--limit', '2', ...cursor]);
      expect(page.status).toBe(0);
      seen.push(...keysIn(page.stdout));
      const more = /More: runledger runs list --cursor (\S+)/.exec(page.stderr);
      if (more === null) break;
      cursor = ['--cursor', more[1]!];
    }
    expect(seen.sort()).toEqual(keys);
  });

  it('reports a --db that is not a database and exits 1 without touching it', () => {
    const result = cli(['runs', 'list', '--db', CLI]);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/storage_unavailable: .*not a SQLite database/);
  });
});

describe('config', () => {
  function parsed<C extends Config['command']>(
    command: C,
    argv: string[],
    env: NodeJS.ProcessEnv = {},
  ): Extract<Config, { command: C }> {
    const config = parseConfig(argv, env);
    if (config.command !== command) throw new Error(`expected ${command}, got ${config.command}`);
    return config as Extract<Config, { command: C }>;
  }

  it('puts the ledger under the platform data directory, overridable by RUNLEDGER_DB and --db', () => {
    expect(defaultDbPath({ XDG_DATA_HOME: '/data' }, 'linux')).toBe('/data/runledger/ledger.db');
    expect(defaultDbPath({}, 'darwin')).toMatch(/Library\/Application Support\/runledger\/ledger\.db$/);
    expect(parsed('serve', [], { RUNLEDGER_DB: '/tmp/a.db' }).db).toBe('/tmp/a.db');
    expect(parsed('serve', ['--db', '/tmp/b.db'], { RUNLEDGER_DB: '/tmp/a.db' }).db).toBe('/tmp/b.db');
    expect(parsed('serve', ['serve'], {}).tenant).toBe('local');
  });

  it('gives the demo a ledger of its own unless --db or RUNLEDGER_DB names one', () => {
    expect(parsed('demo', ['demo'])).toMatchObject({ db: 'runledger-out/demo.db', dbGiven: false, phaseDelayMs: 400 });
    expect(parsed('demo', ['demo'], { RUNLEDGER_DB: '/tmp/a.db' })).toMatchObject({ db: '/tmp/a.db', dbGiven: true });
    expect(parsed('demo', ['demo', '--db', '/tmp/b.db'])).toMatchObject({ db: '/tmp/b.db', dbGiven: true });
  });

  it('routes each command, flags before or after its words', () => {
    expect(parsed('runs-list', ['--db', '/tmp/r.db', 'runs', 'list', '--limit', '5']).list).toMatchObject({ limit: 5 });
    expect(parsed('runs-show', ['runs', 'show', 'run_1']).runId).toBe('run_1');
    expect(parsed('help', ['runs', 'list', '-h']).topics).toEqual(['runs-list']);
    expect(parsed('help', ['--help']).topics).toEqual([]);
    expect(parsed('help', ['serve', '--help']).topics).toEqual(['serve']);
    // A group named alone explains each of its commands, rather than refusing for want of a subcommand.
    expect(parsed('help', ['runs', '--help']).topics).toEqual(['runs-list', 'runs-show']);
    expect(parsed('help', ['providers', '-h']).topics).toEqual(['providers-check', 'providers-schema']);
    expect(parsed('replay', ['replay', 't.jsonl', '--seed', '3']).args).toEqual(['t.jsonl', '--seed', '3']);
    expect(parsed('schema', ['replay', '--report-schema']).schema).toBe('report');
    expect(parsed('version', ['proxy', '-v']).command).toBe('version');
  });

  it('takes everything after "--" as the upstream command of runledger proxy, never as its own flags', () => {
    const config = parsed('proxy', [
      'proxy',
      '--db',
      '/tmp/p.db',
      '--pass',
      'a, b',
      '--',
      'npx',
      '-y',
      'some-server',
      '--db',
      'theirs',
    ]);
    expect(config).toMatchObject({ command: 'proxy', db: '/tmp/p.db' });
    expect(config.proxy).toEqual({
      upstream: { command: ['npx', '-y', 'some-server', '--db', 'theirs'] },
      fence: [],
      pass: ['a', 'b'],
      retryErrors: false,
      waitSeconds: 25,
      upstreamTimeoutMs: 600_000,
      upstreamMax: 16,
      upstreamIdleMs: 600_000,
      upstreamPerSession: false,
    });
    expect(() => parseConfig(['proxy', '--http', '--stateless', '--upstream-per-session', '--', 'x'], {})).toThrow(
      'does not go with --stateless',
    );
    expect(
      parsed('proxy', ['proxy', '--http', '--upstream-url', 'http://127.0.0.1:9/mcp'], {
        RUNLEDGER_UPSTREAM_TOKEN: 't',
      }).proxy.upstream,
    ).toEqual({ url: 'http://127.0.0.1:9/mcp', token: 't' });
  });

  it('bounds the HTTP service by default: body deadline, connections, sessions in all and per tenant, idle time', () => {
    expect(parsed('serve', ['--http']).http).toMatchObject({
      maxBodyBytes: 1024 * 1024,
      bodyTimeoutMs: 20_000,
      maxConnections: 10_000,
      maxSessions: 5000,
      maxTenantSessions: 1000,
      sessionIdleMs: 30 * 60_000,
    });
  });

  it("takes the lease from the ledger's own default", async () => {
    const { DEFAULT_LEASE_MS } = await import('../src/ledger/index.js');
    expect(parsed('serve', []).leaseMs).toBe(DEFAULT_LEASE_MS);
  });
});
