// Templates and paths in provider definitions. A template is JSON whose strings may hold placeholders:
// "{request.prompt}", "{job.id}", "{base_url}". A string that is one placeholder and nothing else takes
// the value's own JSON type (a number stays a number), unless a filter says otherwise
// ("{request.duration_seconds|string}"); placeholders inside a longer string are set as text. A value
// the run does not have (no seed given, no webhook URL) drops the key that holds it. A path is dotted
// ("urls.get", "video.url"): an array met on the way is walked into, each member in turn.

/** What a template can name, by namespace: what the run asked for, the job's handle, and the definition's own values. */
export interface TemplateVars {
  base_url: string;
  model: string;
  run_id?: string;
  webhook_url?: string;
  request?: Record<string, unknown>;
  job?: Record<string, string>;
}

export const NAMESPACES = ['base_url', 'model', 'run_id', 'webhook_url', 'request', 'job'] as const;

/** `{name}`, `{name.field}`, optionally `|string` or `|number`. */
const PLACEHOLDER = /\{([a-z_]+)(?:\.([A-Za-z0-9_]+))?(?:\|(string|number))?\}/g;

export interface Placeholder {
  namespace: string;
  field: string | undefined;
  filter: 'string' | 'number' | undefined;
  /** As written, e.g. "{request.prompt}". */
  text: string;
}

/** Every placeholder in a template (strings at any depth, keys excepted). */
export function placeholders(template: unknown): Placeholder[] {
  const found: Placeholder[] = [];
  const visit = (value: unknown) => {
    if (typeof value === 'string') {
      for (const m of value.matchAll(PLACEHOLDER))
        found.push({ namespace: m[1]!, field: m[2], filter: m[3] as Placeholder['filter'], text: m[0] });
    } else if (Array.isArray(value)) {
      value.forEach(visit);
    } else if (value !== null && typeof value === 'object') {
      Object.values(value).forEach(visit);
    }
  };
  visit(template);
  return found;
}

/** A placeholder's value, or undefined when the run has none. */
function lookup(vars: TemplateVars, p: Pick<Placeholder, 'namespace' | 'field'>): unknown {
  const top = (vars as unknown as Record<string, unknown>)[p.namespace];
  if (p.field === undefined) return top ?? undefined;
  if (top === null || typeof top !== 'object') return undefined;
  return (top as Record<string, unknown>)[p.field] ?? undefined;
}

function filtered(value: unknown, filter: Placeholder['filter']): unknown {
  if (filter === 'string') return typeof value === 'string' ? value : JSON.stringify(value);
  if (filter === 'number') return Number(value);
  return value;
}

const asText = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));

/** A string template as text; undefined when it names a value the run does not have. `encode` escapes inserted values (URL path segments). */
export function fillText(
  template: string,
  vars: TemplateVars,
  encode: (p: Placeholder, text: string) => string = (_p, t) => t,
): string | undefined {
  let missing = false;
  const text = template.replace(
    PLACEHOLDER,
    (whole, namespace: string, field: string | undefined, filter: Placeholder['filter']) => {
      const value = lookup(vars, { namespace, field });
      if (value === undefined) {
        missing = true;
        return '';
      }
      return encode({ namespace, field, filter, text: whole }, asText(filtered(value, filter)));
    },
  );
  return missing ? undefined : text;
}

/** A JSON template filled: typed values for whole placeholders, text inside longer strings, keys dropped where a value is missing. */
export function fill(template: unknown, vars: TemplateVars): unknown {
  if (typeof template === 'string') {
    const whole = /^\{([a-z_]+)(?:\.([A-Za-z0-9_]+))?(?:\|(string|number))?\}$/.exec(template);
    if (whole !== null) {
      const value = lookup(vars, { namespace: whole[1]!, field: whole[2] });
      return value === undefined ? undefined : filtered(value, whole[3] as Placeholder['filter']);
    }
    return fillText(template, vars);
  }
  if (Array.isArray(template)) return template.map((item) => fill(item, vars)).filter((item) => item !== undefined);
  if (template !== null && typeof template === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(template)) {
      const filled = fill(value, vars);
      if (filled !== undefined) out[key] = filled;
    }
    return out;
  }
  return template;
}

/** The values at a dotted path, arrays walked into; "" is the value itself. */
export function readAll(value: unknown, path: string): unknown[] {
  let current: unknown[] = [value];
  for (const step of path === '' ? [] : path.split('.')) {
    const next: unknown[] = [];
    for (const item of current.flatMap((v) => (Array.isArray(v) ? v : [v]))) {
      if (item !== null && typeof item === 'object' && step in item) next.push((item as Record<string, unknown>)[step]);
    }
    current = next;
  }
  return current.flatMap((v) => (Array.isArray(v) ? v : [v])).filter((v) => v !== null && v !== undefined);
}

/** The first value at a dotted path, or undefined. */
export function read(value: unknown, path: string): unknown {
  return readAll(value, path)[0];
}

/** The text at a path: a string, or a number written out; undefined for anything else. */
export function readText(value: unknown, path: string): string | undefined {
  const found = read(value, path);
  if (typeof found === 'string') return found;
  if (typeof found === 'number' && Number.isFinite(found)) return String(found);
  return undefined;
}
