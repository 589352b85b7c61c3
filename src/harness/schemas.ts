// The published contracts: the JSON Schema of a transcript line, of a report, and of a target
// profile, made from the zod schemas the harness itself reads and writes them with.
import { z } from 'zod';
import { ProfileSchema } from './profile.js';
import { ReportSchema } from './report.js';
import { TranscriptLineSchema } from './transcript.js';

const SCHEMAS = {
  transcript: { schema: TranscriptLineSchema, title: 'runledger transcript line' },
  report: { schema: ReportSchema, title: 'runledger replay report' },
  profile: { schema: ProfileSchema, title: 'runledger replay target profile' },
} as const;

export type SchemaName = keyof typeof SCHEMAS;

export function jsonSchema(name: SchemaName): Record<string, unknown> {
  const { schema, title } = SCHEMAS[name];
  const json = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return { $schema: json.$schema, title, ...json };
}
