// The transcript format and the flags of record and replay, in process.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FAULT_KINDS, parseReplayArgs, splitCommand } from '../../src/harness/options.js';
import { createRedactor, readTranscript, redactCommand } from '../../src/harness/transcript.js';
import { tempDir, TRANSCRIPTS } from '../helpers/harness.js';
import { CLI } from '../helpers/mcp.js';

const cli = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

function transcriptOf(lines: string[]): string {
  const file = join(tempDir(), 't.jsonl');
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

const CALL = {
  v: 1,
  type: 'call',
  seq: 1,
  at: '2025-01-01T00:00:00.000Z',
  ms: 2,
  tool: 't',
  arguments: {},
  outcome: 'answered',
  result: { content: [] },
};

describe('readTranscript', () => {
  it('reads the example transcripts, calls in the order they were sent', () => {
    for (const name of ['widgets.jsonl', 'runledger-session.jsonl']) {
      const transcript = readTranscript(join(TRANSCRIPTS, name));
      expect(transcript.command?.length).toBeGreaterThan(0);
      expect(transcript.server?.name).toMatch(/^(toy-ledger|runledger)$/);
      expect(transcript.calls.map((c) => c.seq)).toEqual(transcript.calls.map((_, i) => i + 1));
    }
  });

  it.each([
    [['not json'], /t\.jsonl:1: not JSON/],
    [['[1,2]'], /t\.jsonl:1: each line must be a JSON object/],
    [
      [JSON.stringify({ ...CALL, v: 2 })],
      /t\.jsonl:1: transcript version 2 is not one this runledger reads \(it reads v: 1\)/,
    ],
    [['', JSON.stringify({ ...CALL, type: 'note' })], /t\.jsonl:2: "type" must be session, server or call, got "note"/],
    [[JSON.stringify({ ...CALL, arguments: [] })], /t\.jsonl:1: "arguments" must be an object/],
    [
      [JSON.stringify({ ...CALL, outcome: 'maybe' })],
      /t\.jsonl:1: "outcome" must be answered, error, cancelled, unanswered/,
    ],
    [
      [JSON.stringify({ ...CALL, result: undefined })],
      /t\.jsonl:1: "result" must be an object when outcome is answered/,
    ],
    [
      [JSON.stringify({ v: 1, type: 'session', at: 'x', recorder: 'r', command: ['x'] })],
      /holds no tools\/call to replay/,
    ],
  ])('names the file and line of what is wrong: %j', (lines, message) => {
    expect(() => readTranscript(transcriptOf(lines))).toThrow(message);
  });

  it('names a file it cannot read', () => {
    expect(() => readTranscript('/nonexistent/t.jsonl')).toThrow(
      /cannot read transcript \/nonexistent\/t\.jsonl: ENOENT/,
    );
  });
});

describe('redaction', () => {
  it('redacts bearer tokens, secret-named environment values and given patterns, in every string', () => {
    const redact = createRedactor([/sk-\w+/g], {
      GITHUB_TOKEN: 'ghp_abcdefghijkl',
      HOME: '/home/someone',
      API_KEY: 'short',
    });
    expect(
      redact({
        a: ['Authorization: Bearer eyJhbGc.iOiJ-IUz=', { b: 'token ghp_abcdefghijkl here' }],
        c: 'key sk-live123',
        d: 7,
        e: '/home/someone',
      }),
    ).toEqual({
      a: ['Authorization: Bearer [REDACTED]', { b: 'token [REDACTED] here' }],
      c: 'key [REDACTED]',
      d: 7,
      // Only secret-looking names are redacted, and only values long enough not to match by chance.
      e: '/home/someone',
    });
    expect(createRedactor([], { API_KEY: 'short' })('short')).toBe('short');
  });

  it('redacts the values of secret-looking flags in a command line', () => {
    expect(
      redactCommand(['srv', '--token', 'abc', '--api-key=xyz', '--db', 'a.db', '--password', '--verbose']),
    ).toEqual(['srv', '--token', '[REDACTED]', '--api-key=[REDACTED]', '--db', 'a.db', '--password', '--verbose']);
  });
});

describe('replay flags', () => {
  it('splits a --server command as a shell would, quotes and escapes included', () => {
    expect(splitCommand(`node "my server.js" --name 'a b' x\\ y --empty ""`)).toEqual([
      'node',
      'my server.js',
      '--name',
      'a b',
      'x y',
      '--empty',
      '',
    ]);
    expect(() => splitCommand('node "open')).toThrow(/--server: unclosed "/);
  });

  it('runs every fault by default, and "all" over --url too, leaving the SIGKILL ones to the plan to refuse', () => {
    expect(parseReplayArgs(['t.jsonl']).faults).toHaveLength(FAULT_KINDS.length);
    expect(parseReplayArgs(['t.jsonl', '--url', 'http://127.0.0.1:1/mcp', '--faults', 'all']).faults).toHaveLength(
      FAULT_KINDS.length,
    );
    expect(parseReplayArgs(['t.jsonl', '--faults', 'burst, duplicate,burst']).faults).toEqual(['burst', 'duplicate']);
    expect(parseReplayArgs(['t.jsonl'], { RUNLEDGER_TOKEN: 'tok' }).target).toBeUndefined();
    expect(
      parseReplayArgs(['t.jsonl', '--url', 'http://127.0.0.1:1/mcp'], { RUNLEDGER_TOKEN: 'tok' }).target,
    ).toMatchObject({ kind: 'url', token: 'tok' });
  });

  it.each([
    [[], /replay takes one transcript file/],
    [['a', 'b'], /replay takes one transcript file/],
    [['t', '--server', ''], /--server needs a command/],
    [['t', '--burst', '1'], /--burst must be from 2 to 64, got 1/],
    [['t', '--settle-ms', '10'], /--settle-ms must be from 1000/],
    [['t', '--faults', ','], /--faults needs a list/],
    [['t', '--url', 'not a url'], /--url must be an http\(s\) URL/],
  ])('refuses %j with a message naming the flag', (args, message) => {
    expect(() => parseReplayArgs(args, {})).toThrow(message);
  });
});

describe('record and replay at the command line', () => {
  it('each has its own --help, not runledger’s', () => {
    const record = cli('record', '--help');
    expect(record.status).toBe(0);
    expect(record.stdout).toMatch(/^runledger record — /);
    expect(record.stdout).toContain('--schema');
    expect(record.stdout).not.toContain('runledger demo');
    // Flags after "--" are the server's: its --help is not record's.
    expect(cli('record', '--out', '/dev/null', '--', 'node', '--help').stdout).not.toMatch(/^runledger record — /);
    const replay = cli('replay', '-h');
    expect(replay.stdout).toMatch(/^runledger replay — /);
    expect(replay.stdout).toMatch(/--require-all/);
    expect(replay.stdout).toMatch(
      /Exit codes: 0 nothing broke; 1 an invariant broke; 2 bad input; 3 .*; 4 with --require-all/s,
    );
    expect(cli('replay', '--bogus').stderr).toMatch(/Run "runledger replay --help" for usage\./);
  });

  it('publishes the JSON Schema of the transcript, the report and the profile, one version field "v" in both formats', () => {
    const transcript = JSON.parse(cli('record', '--schema').stdout) as {
      title: string;
      oneOf: { properties: Record<string, { const?: unknown }> }[];
    };
    expect(transcript.title).toBe('runledger transcript line');
    expect(transcript.oneOf.map((line) => line.properties.type!.const)).toEqual(['session', 'server', 'call']);
    expect(transcript.oneOf.every((line) => line.properties.v!.const === 1)).toBe(true);
    const report = JSON.parse(cli('replay', '--report-schema').stdout) as {
      title: string;
      properties: Record<string, { const?: unknown }>;
      required: string[];
    };
    expect(report.title).toBe('runledger replay report');
    expect(report.properties.v!.const).toBe(2);
    expect(report.required).toEqual(expect.arrayContaining(['v', 'ok', 'verdict', 'profile', 'invariants', 'calls']));
    const profile = JSON.parse(cli('replay', '--profile-schema').stdout) as {
      properties: Record<string, unknown>;
      additionalProperties: boolean;
    };
    expect(Object.keys(profile.properties)).toEqual(
      expect.arrayContaining(['key_argument', 'run_id', 'poll', 'usage', 'done_words']),
    );
    expect(profile.additionalProperties).toBe(false);
  });
});
