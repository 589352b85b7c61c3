// Bearer tokens mapped to tenants. Tokens come from a file (`TENANT TOKEN` per line, # comments) or
// RUNLEDGER_TOKENS (`TENANT:TOKEN,TENANT:TOKEN`), and are compared in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { UsageError } from '../command-line.js';
import { TENANT, TENANT_RULE } from '../config-sections.js';

const MIN_TOKEN = 16;

export interface TokenTable {
  size: number;
  /** The tenant a bearer token belongs to, or null. Takes the same time whichever token matches. */
  tenantFor(token: string): string | null;
}

const digest = (token: string) => createHash('sha256').update(token).digest();

export function tokenTable(pairs: [tenant: string, token: string][]): TokenTable {
  const entries = pairs.map(([tenant, token]) => ({ tenant, digest: digest(token) }));
  return {
    size: entries.length,
    tenantFor(token) {
      // Digests have equal length, so timingSafeEqual applies; every entry is compared, no early exit.
      const presented = digest(token);
      let found: string | null = null;
      for (const entry of entries) if (timingSafeEqual(entry.digest, presented)) found = entry.tenant;
      return found;
    },
  };
}

function checkPair(tenant: string, token: string, where: string): [string, string] {
  if (!TENANT.test(tenant)) throw new UsageError(`${where}: tenant "${tenant}" must be ${TENANT_RULE}`);
  if (token.length < MIN_TOKEN || /\s/.test(token)) {
    throw new UsageError(
      `${where}: the token for tenant ${tenant} must be at least ${MIN_TOKEN} characters, without spaces`,
    );
  }
  return [tenant, token];
}

export function parseTokensFile(text: string, file: string): [string, string][] {
  const pairs: [string, string][] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') return;
    const parts = line.split(/\s+/);
    if (parts.length !== 2)
      throw new UsageError(`${file}:${i + 1}: expected "TENANT TOKEN", got ${parts.length} words`);
    pairs.push(checkPair(parts[0]!, parts[1]!, `${file}:${i + 1}`));
  });
  return pairs;
}

export function parseTokensEnv(text: string): [string, string][] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '')
    .map((item, i) => {
      const colon = item.indexOf(':');
      if (colon <= 0) throw new UsageError(`RUNLEDGER_TOKENS entry ${i + 1}: expected TENANT:TOKEN`);
      return checkPair(item.slice(0, colon), item.slice(colon + 1), `RUNLEDGER_TOKENS entry ${i + 1}`);
    });
}

/** All configured tokens; a token given twice for two tenants is refused. */
export function loadTokens(file: string | undefined, env: string | undefined): TokenTable {
  const pairs: [string, string][] = [];
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`--tokens ${file}: ${(err as Error).message}`);
    }
    pairs.push(...parseTokensFile(text, file));
  }
  if (env !== undefined && env.trim() !== '') pairs.push(...parseTokensEnv(env));
  const seen = new Map<string, string>();
  for (const [tenant, token] of pairs) {
    const other = seen.get(token);
    if (other !== undefined && other !== tenant)
      throw new UsageError(`the same token is given for tenants ${other} and ${tenant}`);
    seen.set(token, tenant);
  }
  return tokenTable(pairs);
}
