// What an agent reads when its arguments are wrong: every tool, every kind of bad value (an enum, a
// union, a number out of range, an unknown key, a wrong type, a missing field), each answer naming
// the field and what it allows, in whole sentences, nothing stored.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { catalogue } from '../../tools/index.js';
import { openLedger, type RunLedger } from '../../src/ledger/index.js';
import { describeSchema } from '../../src/mcp/issues.js';
import { createServer, mcpTools } from '../../src/mcp/server.js';
import { RunService } from '../../src/runs.js';

const KEY = 'validation-key-000000000001';
const SHOT = { brief: 'A mug', product_name: 'Mug', idempotency_key: KEY };
const CARD = { headline: 'Hi', idempotency_key: KEY };

let ledger: RunLedger;
let client: Client;

beforeAll(async () => {
  ledger = await openLedger({ url: ':memory:' });
  const runs = new RunService(ledger);
  const { server } = createServer({ runs, tools: mcpTools(runs, catalogue), tenantOf: () => 'local', version: 'test' });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  client = new Client({ name: 'test', version: '0' });
  await client.connect(clientSide);
});

afterAll(async () => {
  await client.close();
  await ledger.close();
});

async function refusal(tool: string, args: Record<string, unknown>) {
  const result = (await client.callTool({ name: tool, arguments: args })) as CallToolResult;
  expect(result.isError).toBe(true);
  const error = (
    result.structuredContent as {
      error: { code: string; message: string; details: { problems: { field: string; rule: string }[] } };
    }
  ).error;
  expect(error.code).toBe('validation_failed');
  const text = result.content[0]?.type === 'text' ? result.content[0].text : '';
  return { text, error };
}

describe('validation_failed', () => {
  it.each([
    // unions
    [
      'create_product_shot',
      { ...SHOT, size: '4:5' },
      'size must be one of "1:1", "4:3", "3:4", "16:9", "9:16" or an object with width and height, not "4:5".',
    ],
    [
      'create_product_shot',
      { ...SHOT, size: 12 },
      'size must be one of "1:1", "4:3", "3:4", "16:9", "9:16" or an object with width and height, not 12.',
    ],
    [
      'create_product_shot',
      { ...SHOT, size: { width: 1000 } },
      'size.height is required: a whole number from 256 to 2048.',
    ],
    [
      'create_product_shot',
      { ...SHOT, size: { width: 100, height: 1000 } },
      'size.width must be a whole number from 256 to 2048, not 100.',
    ],
    [
      'create_product_shot',
      { ...SHOT, size: { width: 1000, height: 1000, depth: 3 } },
      'size.depth is not a field here; the fields are width and height.',
    ],
    // enums
    [
      'create_product_shot',
      { ...SHOT, style: 'gritty' },
      'style must be one of "studio", "lifestyle", "minimal" or "bold", not "gritty".',
    ],
    [
      'create_social_card',
      { ...CARD, channel: 'banner' },
      'channel must be one of "square", "landscape" or "story", not "banner".',
    ],
    [
      'list_runs',
      { phase: 'finished' },
      'phase must be one of "queued", "composing", "rendering", "done", "failed" or "canceled", not "finished".',
    ],
    [
      'poll_run',
      { idempotency_key: KEY, tool: 'video' },
      'tool must be one of "product_shot", "social_card" or "product_video".',
    ],
    // numbers out of range, and not whole
    ['create_product_shot', { ...SHOT, variants: 9 }, 'variants must be a whole number from 1 to 4, not 9.'],
    ['create_product_shot', { ...SHOT, variants: 1.5 }, 'variants must be a whole number from 1 to 4, not 1.5.'],
    ['create_product_shot', { ...SHOT, seed: -1 }, 'seed must be a whole number from 0 to 4294967295, not -1.'],
    ['create_social_card', { ...CARD, wait_seconds: 51 }, 'wait_seconds must be a number from 0 to 50, not 51.'],
    ['list_runs', { limit: 0 }, 'limit must be a whole number from 1 to 100, not 0.'],
    // lengths
    ['create_product_shot', { ...SHOT, brief: '' }, 'brief must be a string of 1 to 500 characters (this one has 0).'],
    [
      'create_social_card',
      { ...CARD, body: 'x'.repeat(400) },
      'body must be a string of at most 320 characters (this one has 400).',
    ],
    [
      'create_product_shot',
      { ...SHOT, brand_kit: { name: 'B', logo_text: 'B', palette: [] } },
      'brand_kit.palette must have at least one colour.',
    ],
    // wrong types
    ['create_product_shot', { ...SHOT, variants: '2' }, 'variants must be a whole number from 1 to 4, not "2".'],
    ['create_product_shot', { ...SHOT, dry_run: 'yes' }, 'dry_run must be true or false, not "yes".'],
    [
      'create_product_shot',
      { ...SHOT, brand_kit: { name: 'B', logo_text: 'B', palette: ['red'] } },
      'brand_kit.palette.0 must be an object with hex and role, not "red".',
    ],
    ['cancel_run', { run_id: 5 }, 'run_id must be a string of 1 to 100 characters, not 5.'],
    // unknown keys
    [
      'create_social_card',
      { ...CARD, format: 'tall' },
      'format is not a field here; the fields are headline, body, channel, brand_kit, seed, idempotency_key, wait_seconds and dry_run.',
    ],
    ['get_usage', { tool: 'video' }, 'tool is not a field here; this takes no fields.'],
    // missing
    [
      'create_product_shot',
      { product_name: 'Mug', idempotency_key: KEY },
      'brief is required: a string of 1 to 500 characters.',
    ],
    [
      'create_social_card',
      { headline: 'Hi' },
      'idempotency_key is required: one new key (a UUID) per logical request, the same key on every retry of it.',
    ],
    ['delete_run', {}, 'run_id is required: a string of 1 to 100 characters.'],
    ['poll_run', {}, 'The arguments must name the run: give run_id, or idempotency_key together with tool.'],
  ])('%s %j: names the field and what it allows', async (tool, args, sentence) => {
    const { text, error } = await refusal(tool, args);
    expect(text).toContain(` ${sentence} `);
    expect(error.message).toBe(`Invalid arguments: ${sentence}`);
    // No zod wording reaches the agent.
    expect(text).not.toMatch(/Invalid input|Invalid option|Too (small|big)|Unrecognized key|expected \S+, received/);
  });

  it('answers several problems as several sentences, then the fix', async () => {
    const { text, error } = await refusal('create_product_shot', { ...SHOT, variants: 0, style: 'noir', bogus: 1 });
    expect(text).toBe(
      'validation_failed: Invalid arguments: variants must be a whole number from 1 to 4, not 0. ' +
        'style must be one of "studio", "lifestyle", "minimal" or "bold", not "noir". ' +
        'bogus is not a field here; the fields are brief, product_name, tagline, brand_kit, seed, size, variants, style, idempotency_key, wait_seconds and dry_run. ' +
        'Correct the named fields and call again; nothing was stored, so the same idempotency_key may be reused.',
    );
    expect(error.details.problems.map((p) => p.field)).toEqual(['variants', 'style', 'bogus']);
    expect(await ledger.usage('local')).toMatchObject({ runs: 0 });
  });
});

describe('describeSchema', () => {
  it.each([
    [z.string(), 'a string'],
    [z.string().max(9), 'a string of at most 9 characters'],
    [z.string().length(3), 'a string of exactly 3 characters'],
    [z.number().gt(0), 'a number greater than 0'],
    [z.number().int().min(2), 'a whole number of at least 2'],
    [z.number().max(2), 'a number of at most 2'],
    [z.array(z.string()).max(3), 'a list of at most 3 strings'],
    [z.array(z.enum(['a', 'b'])), 'a list of items, each one of "a" or "b"'],
    [z.literal('x').optional(), '"x"'],
    [z.union([z.literal('a'), z.number()]), 'one of "a" or a number'],
  ])('says what %# accepts', (schema, words) => {
    expect(describeSchema(schema)).toBe(words);
  });
});
