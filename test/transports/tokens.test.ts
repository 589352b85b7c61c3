import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/command-line.js';
import { loadTokens, parseTokensEnv, parseTokensFile } from '../../src/transports/tokens.js';

describe('bearer tokens', () => {
  it('reads TENANT TOKEN pairs from a file, skipping comments and blank lines', () => {
    const pairs = parseTokensFile(
      ['# team tokens', '', 'acme   acme-token-0123456789  # the ops team', '  globex globex-token-0123456789'].join(
        '\n',
      ),
      'tokens.txt',
    );
    expect(pairs).toEqual([
      ['acme', 'acme-token-0123456789'],
      ['globex', 'globex-token-0123456789'],
    ]);
  });

  it('names the file and line of a malformed entry', () => {
    expect(() => parseTokensFile('acme\n', 'tokens.txt')).toThrow(/tokens\.txt:1: expected "TENANT TOKEN"/);
    expect(() => parseTokensFile('\nacme short\n', 'tokens.txt')).toThrow(/tokens\.txt:2: .*at least 16 characters/);
    expect(() => parseTokensFile('bad/tenant acme-token-0123456789', 't')).toThrow(UsageError);
  });

  it('reads TENANT:TOKEN pairs from RUNLEDGER_TOKENS', () => {
    expect(parseTokensEnv('acme:acme-token-0123456789, globex:globex-token-0123456789')).toEqual([
      ['acme', 'acme-token-0123456789'],
      ['globex', 'globex-token-0123456789'],
    ]);
    expect(() => parseTokensEnv('acme-token-0123456789')).toThrow(/entry 1: expected TENANT:TOKEN/);
  });

  it('maps a token to its tenant and nothing else, from the file and the environment together', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'runledger-tokens-')), 'tokens');
    writeFileSync(file, 'acme acme-token-0123456789\n');
    const table = loadTokens(file, 'globex:globex-token-0123456789');
    expect(table.size).toBe(2);
    expect(table.tenantFor('acme-token-0123456789')).toBe('acme');
    expect(table.tenantFor('globex-token-0123456789')).toBe('globex');
    expect(table.tenantFor('acme-token-012345678')).toBeNull();
    expect(table.tenantFor('')).toBeNull();
  });

  it('refuses one token for two tenants, and a missing file', () => {
    expect(() => loadTokens(undefined, 'a:same-token-0123456789,b:same-token-0123456789')).toThrow(/tenants a and b/);
    expect(() => loadTokens('/nonexistent/tokens', undefined)).toThrow(/--tokens \/nonexistent\/tokens/);
  });
});
