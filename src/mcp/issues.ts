// zod's issues in words an agent can act on: each names its field and says what the field allows
// (the values of an enum, the bounds of a number or a length, the fields of an object, the shapes of a
// union), read from the schema itself so that the message and the schema never disagree.
import type { z } from 'zod';
import type { FieldProblem } from '../errors.js';

type Schema = z.core.$ZodType;
type RawIssue = z.core.$ZodRawIssue;

interface CheckDef {
  check: string;
  value?: unknown;
  inclusive?: boolean;
  minimum?: number;
  maximum?: number;
  length?: number;
  format?: string;
}

interface Def {
  type: string;
  checks?: { _zod: { def: CheckDef } }[];
  innerType?: Schema;
  in?: Schema;
  options?: readonly Schema[];
  entries?: Record<string, string | number>;
  values?: readonly unknown[];
  shape?: Record<string, Schema>;
  element?: Schema;
}

const defOf = (schema: Schema): Def => schema._zod.def as unknown as Def;
const checksOf = (schema: Schema): CheckDef[] => (defOf(schema).checks ?? []).map((check) => check._zod.def);

export function orList(items: readonly string[]): string {
  if (items.length <= 1) return items[0] ?? '';
  return `${items.slice(0, -1).join(', ')} or ${items.at(-1)}`;
}

const andList = (items: readonly string[]) =>
  items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`;

/** A bound worth saying: the safe-integer limits z.int() adds are no rule a caller needs to hear. */
const real = (n: unknown): n is number =>
  typeof n === 'number' && Number.isFinite(n) && Math.abs(n) < Number.MAX_SAFE_INTEGER;

/** "1 to 8", "at most 90", ...: a length's bounds, or '' when it has none. */
function lengths(checks: CheckDef[]): string {
  const exact = checks.find((c) => c.check === 'length_equals')?.length;
  if (exact !== undefined) return `exactly ${exact}`;
  const min = checks.find((c) => c.check === 'min_length')?.minimum;
  const max = checks.find((c) => c.check === 'max_length')?.maximum;
  if (real(min) && min > 0 && real(max)) return `${min} to ${max}`;
  if (real(max)) return `at most ${max}`;
  if (real(min) && min > 0) return `at least ${min}`;
  return '';
}

function numberRule(schema: Schema): string {
  const checks = checksOf(schema);
  const whole = checks.some((c) => c.check === 'number_format' && /int/.test(c.format ?? ''));
  const low = checks.find((c) => c.check === 'greater_than');
  const high = checks.find((c) => c.check === 'less_than');
  const noun = whole ? 'a whole number' : 'a number';
  const min = real(low?.value) ? low.value : undefined;
  const max = real(high?.value) ? high.value : undefined;
  if (min !== undefined && max !== undefined && low?.inclusive && high?.inclusive)
    return `${noun} from ${min} to ${max}`;
  const parts: string[] = [];
  if (min !== undefined) parts.push(low?.inclusive ? `of at least ${min}` : `greater than ${min}`);
  if (max !== undefined)
    parts.push(high?.inclusive ? `${parts.length === 0 ? 'of ' : ''}at most ${max}` : `less than ${max}`);
  return parts.length === 0 ? noun : `${noun} ${parts.join(' and ')}`;
}

const quote = (value: unknown) => JSON.stringify(value);

/** What a schema accepts, as a noun phrase: "a whole number from 1 to 4", `one of "a" or "b"`. */
export function describeSchema(schema: Schema): string {
  const def = defOf(schema);
  switch (def.type) {
    case 'string': {
      const length = lengths(checksOf(schema));
      return length === '' ? 'a string' : `a string of ${length} characters`;
    }
    case 'number':
      return numberRule(schema);
    case 'boolean':
      return 'true or false';
    case 'enum':
      return `one of ${orList(Object.values(def.entries ?? {}).map(quote))}`;
    case 'literal':
      return (def.values ?? []).length === 1
        ? quote(def.values?.[0])
        : `one of ${orList((def.values ?? []).map(quote))}`;
    case 'object': {
      const keys = Object.keys(def.shape ?? {});
      return keys.length === 0 ? 'an object' : `an object with ${andList(keys)}`;
    }
    case 'array': {
      const length = lengths(checksOf(schema));
      const items = def.element === undefined ? 'items' : plural(describeSchema(def.element));
      return `a list of ${length === '' ? '' : `${length} `}${items}`;
    }
    case 'optional':
    case 'default':
    case 'prefault':
    case 'nullable':
    case 'readonly':
    case 'catch':
      return def.innerType === undefined ? 'a value' : describeSchema(def.innerType);
    case 'pipe':
      return def.in === undefined ? 'a value' : describeSchema(def.in);
    case 'union': {
      const options = (def.options ?? []).map(describeSchema);
      const choices = options.map((text) => text.replace(/^one of /, '')).flatMap(splitOr);
      return `${options.some((text) => /^(one of |")/.test(text)) ? 'one of ' : ''}${orList(choices)}`;
    }
    case 'null':
      return 'null';
    default:
      return 'a valid value';
  }
}

/** "one of a, b or c" inside a union reads better flattened into the union's own list. */
function splitOr(text: string): string[] {
  return /^"/.test(text) ? text.split(/, | or /) : [text];
}

/** "an object with hex and role" → "objects with hex and role"; anything else, item by item. */
function plural(noun: string): string {
  const match = /^an? (string|number|whole number|object|list)\b/.exec(noun);
  return match === null ? `items, each ${noun}` : `${match[1]}s${noun.slice(match[0].length)}`;
}

function objectKeys(schema: Schema | undefined): string[] {
  if (schema === undefined) return [];
  const def = defOf(schema);
  if (def.type === 'object') return Object.keys(def.shape ?? {});
  if (def.type === 'pipe') return objectKeys(def.in);
  return objectKeys(def.innerType);
}

/** The value an agent sent, briefly: enough to see which one was wrong. */
function shown(input: unknown): string {
  if (typeof input === 'string') return input.length > 40 ? `a string of ${input.length} characters` : quote(input);
  if (Array.isArray(input)) return `a list of ${input.length} item${input.length === 1 ? '' : 's'}`;
  if (input === null) return 'null';
  if (typeof input === 'object') return 'an object';
  return String(input);
}

/**
 * zod's error map for one parse: a rule for the field, a phrase that follows the field's name
 * ("must be a whole number from 1 to 4, not 9"). A message the schema sets itself wins over this.
 */
export function ruleOf(issue: RawIssue): string | undefined {
  const owner = (issue.schema ?? issue.inst) as Schema | undefined;
  const allowed = owner === undefined || !('_zod' in owner) ? undefined : describeSchema(owner);
  switch (issue.code) {
    case 'invalid_type':
      if (issue.input === undefined) return `is required: ${allowed ?? issue.expected}`;
      return `must be ${allowed ?? issue.expected}, not ${shown(issue.input)}`;
    case 'too_small':
    case 'too_big': {
      const what =
        allowed ??
        `${issue.code === 'too_small' ? 'at least' : 'at most'} ${String('minimum' in issue ? issue.minimum : issue.maximum)}`;
      if (typeof issue.input === 'string') return `must be ${what} (this one has ${issue.input.length})`;
      if (Array.isArray(issue.input)) return `must be ${what} (this one has ${issue.input.length} items)`;
      return `must be ${what}, not ${shown(issue.input)}`;
    }
    case 'invalid_value':
    case 'invalid_union':
      return `must be ${allowed ?? `one of ${orList((issue.code === 'invalid_value' ? issue.values : []).map(quote))}`}, not ${shown(issue.input)}`;
    case 'unrecognized_keys': {
      const keys = objectKeys(owner);
      const not = issue.keys.length === 1 ? 'is not a field here' : 'are not fields here';
      return keys.length === 0 ? `${not}; this takes no fields` : `${not}; the fields are ${andList(keys)}`;
    }
    case 'invalid_format':
      return issue.format === 'regex' ? `must match ${String(issue.pattern)}` : `must be a valid ${issue.format}`;
    case 'not_multiple_of':
      return `must be a multiple of ${issue.divisor}`;
    default:
      return undefined; // zod's own words
  }
}

const fieldOf = (path: readonly PropertyKey[]) => (path.length === 0 ? '(arguments)' : path.map(String).join('.'));

/**
 * Issues as field problems. An unknown key is its own field; a union whose input took one of its
 * shapes and failed inside it (size: {"width": 1000}) names the inner field rather than the union.
 */
export function problemsOf(issues: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[] = []): FieldProblem[] {
  return issues.flatMap((issue): FieldProblem[] => {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys')
      return [{ field: issue.keys.map((key) => fieldOf([...path, key])).join(', '), rule: issue.message }];
    if (issue.code === 'invalid_union') {
      const inside = issue.errors.filter(
        (branch) =>
          branch.length > 0 && branch.every((inner) => inner.path.length > 0 || inner.code === 'unrecognized_keys'),
      );
      if (inside.length === 1) return problemsOf(inside[0]!, path);
    }
    return [{ field: fieldOf(path), rule: issue.message }];
  });
}
