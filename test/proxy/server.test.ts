// The fenced tool definitions runledger proxy lists, and the shape of its typed errors.
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import { describe, expect, it } from 'vitest';
import { IdempotencyKeyReusedError } from '../../src/errors.js';
import { admittingErrors, fencedDefinition, META_ERROR, proxyErrorResult } from '../../src/proxy/server.js';

const reused = new IdempotencyKeyReusedError('run_1', ['text'], '2026-01-01T00:00:00.000Z', 'Call again.');
const tool = (outputSchema?: Tool['outputSchema']): Tool => ({
  name: 'note',
  inputSchema: { type: 'object', properties: { text: { type: 'string' } } },
  ...(outputSchema ? { outputSchema } : {}),
});
// The validator the SDK's client checks structured content with.
const validates = (schema: object, value: unknown) =>
  new AjvJsonSchemaValidator().getValidator(schema as never)(value).valid;

describe('a fenced tool’s output schema', () => {
  it('admits the tool’s own answers and runledger’s error, and nothing else, with $defs kept at the root', () => {
    const schema = {
      $schema: 'http://json-schema.org/draft-07/schema#',
      type: 'object' as const,
      properties: { lines: { type: 'array', items: { $ref: '#/$defs/line' } } },
      required: ['lines'],
      additionalProperties: false,
      $defs: { line: { type: 'string' } },
    };
    const wide = admittingErrors(schema)!;
    expect(wide).toMatchObject({ $schema: schema.$schema, $defs: schema.$defs, type: 'object' });
    expect(validates(wide, { lines: ['a'] })).toBe(true);
    expect(validates(wide, { lines: [1] })).toBe(false);
    expect(validates(wide, { other: true })).toBe(false);
    expect(validates(wide, proxyErrorResult(reused, fencedDefinition(tool(schema))).structuredContent)).toBe(true);
  });

  it('is kept as it is when a reference points into its own body, and the error then leaves structuredContent out', () => {
    const schema = { type: 'object' as const, properties: { a: { type: 'string' }, b: { $ref: '#/properties/a' } } };
    expect(admittingErrors(schema)).toBeUndefined();
    const definition = fencedDefinition(tool(schema));
    expect(definition.outputSchema).toEqual(schema);
    const result = proxyErrorResult(reused, definition);
    expect(result.structuredContent).toBeUndefined();
    expect(result._meta?.[META_ERROR]).toMatchObject({ code: 'idempotency_key_reused' });
    expect((result.content[0] as { text: string }).text).toMatch(/^idempotency_key_reused: .*\. Call again\./);
  });

  it('carries the error in structuredContent for a tool without an output schema, and not for a tool it does not know', () => {
    expect(proxyErrorResult(reused, tool()).structuredContent).toMatchObject({
      error: { code: 'idempotency_key_reused' },
    });
    expect(proxyErrorResult(reused, undefined).structuredContent).toBeUndefined();
  });
});
