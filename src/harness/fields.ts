// A field of an answer, as a profile or a flag names it: a dot path into the answer's JSON, or one
// entry of its _meta. Profiles, detection and the reading of answers all look fields up this way.
import { isObject, type JsonObject } from './json.js';

/** A field of an answer, parsed: where to look, step by step. */
export interface FieldPath {
  text: string;
  meta: boolean;
  steps: string[];
}

export function parseField(text: string): FieldPath {
  // A _meta name is namespaced with dots and slashes ("io.runledger/run_id"): it is one step.
  if (text.startsWith('_meta.')) return { text, meta: true, steps: [text.slice('_meta.'.length)] };
  return { text, meta: false, steps: text.split('.') };
}

export function readField(source: { data: JsonObject; meta: JsonObject }, path: FieldPath): unknown {
  let value: unknown = path.meta ? source.meta : source.data;
  for (const step of path.steps) {
    if (!isObject(value)) return undefined;
    value = value[step];
  }
  return value;
}
