// A job provider declared in a file, not in code: how to submit a job (the paid step), where the
// answers keep the job id, its status, its outputs and its error, which statuses mean done, failed or
// canceled, how to cancel, how to find a job whose handle was lost (a list endpoint), how webhooks are
// signed, and whether the API honours idempotency keys. One zod schema is the contract: files are
// checked against it with errors that name the field, the TypeScript types are inferred from it, and
// its JSON Schema is published (`runledger providers schema`). providers/*.json are the shipped ones.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { NAMESPACES, placeholders, type Placeholder } from './template.js';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Names the configuration already gives other providers. */
const RESERVED = ['builtin', 'openai'];

const path = z
  .string()
  .regex(/^$|^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'must be a dotted path like "urls.get" ("" for the whole answer)')
  .describe('A dotted path into a JSON answer, e.g. "urls.get"; an array met on the way is walked into.');
const template = z
  .string()
  .min(1)
  .describe('Text with placeholders: {base_url}, {model}, {run_id}, {request.FIELD}, {job.id}, {job.CAPTURED}.');
const method = z.enum(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);
const statuses = z
  .array(z.string().min(1))
  .describe("The provider's status texts with this meaning, as its answers spell them.");

const call = z.strictObject({
  method: method.default('GET'),
  url: template,
});

const submit = z.strictObject({
  method: method.default('POST'),
  url: template.describe('Where a job is submitted, e.g. "{base_url}/models/{model}/predictions".'),
  body: z
    .unknown()
    .optional()
    .describe(
      'The JSON body, a template filled from the run: a string that is one placeholder keeps its type; a value the run lacks drops its key.',
    ),
  headers: z.record(z.string(), z.string()).optional().describe('More request headers (templates too).'),
  webhook: z
    .strictObject({
      body: z
        .record(z.string(), z.unknown())
        .optional()
        .describe('Merged into the body when webhooks are on, e.g. {"webhook": "{webhook_url}"}.'),
      query: z
        .record(z.string(), z.string())
        .optional()
        .describe('Added to the submit URL\'s query when webhooks are on, e.g. {"fal_webhook": "{webhook_url}"}.'),
    })
    .optional()
    .describe(
      "How a submit asks for webhooks; {webhook_url} is this server's /webhooks/<name> URL, naming the run. Left out without --public-url.",
    ),
  response: z.strictObject({
    id: path.describe("Where the submit's answer has the job id."),
    capture: z
      .record(z.string().regex(/^[a-z][a-z0-9_]*$/, 'capture names are lower-case letters, digits and "_"'), path)
      .default({})
      .describe(
        'Values of the answer kept with the job, by name, for later templates ({job.NAME}): status, cancel or result URLs.',
      ),
  }),
});

const status = z.strictObject({
  method: method.default('GET'),
  url: template.describe(
    'Where a job\'s status is read, e.g. "{base_url}/predictions/{job.id}" or "{job.status_url}".',
  ),
  state: path.describe('Where the answer has the status text.'),
  done: statuses.min(1),
  failed: statuses,
  canceled: statuses,
  running: statuses
    .default([])
    .describe('Statuses that mean the job is being worked on (others not listed mean it waits in a queue).'),
  error: path
    .optional()
    .describe('Where an error message is; a job whose status says done but which has one failed (fal).'),
  progress: z
    .strictObject({ path, scale: z.union([z.literal(1), z.literal(100)]).default(1) })
    .optional()
    .describe('Where the answer gives how far the job is, 0–1 (scale 1) or 0–100 (scale 100).'),
});

const outputs = z.strictObject({
  from: z
    .enum(['status', 'result'])
    .default('status')
    .describe('Which answer has the outputs: the status answer, or the result document (see result).'),
  path: path.describe(
    'Where the output URLs are: a URL, a list of them, or objects holding them (e.g. "video.url", "images.url").',
  ),
  poster: path
    .optional()
    .describe(
      "Where a video's poster image URL is, when the provider gives one: that frame is scored against the brand rubric.",
    ),
});

const list = z
  .strictObject({
    method: method.default('GET'),
    url: template,
    items: path.describe('Where the answer has the list of jobs.'),
    id: path.describe('Where each item has its job id.'),
    next: path.optional().describe("Where the answer has the next page's URL."),
    max_pages: z.number().int().min(1).max(50).default(5),
    capture: z
      .record(z.string().regex(/^[a-z][a-z0-9_]*$/), path)
      .default({})
      .describe('As submit.response.capture, from each item.'),
    created_at: path
      .optional()
      .describe('Where each item has its creation time (ISO 8601): only jobs made around the submit are candidates.'),
    run_id: path
      .optional()
      .describe('Where each item carries text that holds the run id (the webhook URL, metadata): a sure match.'),
    input: z
      .strictObject({
        listed: path.describe("Where each item has the job's input."),
        submitted: path.describe('Where the submitted body has the same input.'),
        fields: z
          .array(z.string().min(1))
          .min(1)
          .describe('The input fields compared (those the provider echoes unchanged).'),
      })
      .optional()
      .describe('Matching by input and time, when no run id is carried: the fields must equal what was submitted.'),
  })
  .describe('A list endpoint, for finding a job submitted before a crash whose handle was never stored.');

const signing = z.discriminatedUnion('scheme', [
  z.strictObject({
    scheme: z.literal('standard-webhooks'),
    secret_env: z
      .string()
      .regex(ENV_NAME, 'must name an environment variable')
      .describe('The environment variable holding the signing secret (whsec_...).'),
  }),
  z.strictObject({
    scheme: z.literal('fal-ed25519'),
    jwks_url: z.url().describe("The provider's published public keys (JWKS)."),
  }),
]);

const webhook = z.strictObject({
  signing,
  id_header: z
    .string()
    .min(1)
    .default('webhook-id')
    .describe("The header holding the delivery's id, which a retry repeats: the dedupe key."),
  job_id: path.describe('Where the body has the job id.'),
  state: path
    .optional()
    .describe('Where the body has the status text (logged; the status is always read from the provider).'),
});

export const ProviderDefinitionSchema = z
  .strictObject({
    $schema: z.string().optional(),
    name: z
      .string()
      .regex(/^[a-z][a-z0-9-]{0,31}$/, 'must be 1–32 lower-case letters, digits or "-", starting with a letter')
      .refine((n) => !RESERVED.includes(n), 'is the name of a built-in provider')
      .describe("The provider's name in --provider, --provider-for, charges and /webhooks/<name>."),
    title: z.string().optional(),
    model: z
      .string()
      .min(1)
      .describe('The model, as the provider names it ({model} in templates); it goes on charges.'),
    base_url: z.url().describe('The API base ({base_url} in templates).'),
    auth: z
      .strictObject({
        header: z.string().min(1).default('Authorization'),
        prefix: z.string().default('Bearer '),
        env: z
          .string()
          .regex(ENV_NAME, 'must name an environment variable')
          .describe('The environment variable holding the API key; the key never goes in the file.'),
      })
      .describe('How calls to the API are authenticated (never the output downloads).'),
    timeout_ms: z.number().int().min(1000).max(600_000).default(60_000).describe('Cut-off for one HTTP exchange.'),
    submit,
    status,
    outputs,
    result: call
      .optional()
      .describe('Where the result document is read, when outputs come from it (fal: "{job.response_url}").'),
    cancel: call.optional().describe('How a job is canceled.'),
    list: list.optional(),
    webhook: webhook.optional().describe("How the provider's webhooks are signed and read."),
    idempotency: z
      .strictObject({
        honoured: z.boolean(),
        header: z.string().min(1).default('Idempotency-Key'),
      })
      .default({ honoured: false, header: 'Idempotency-Key' })
      .describe(
        'Whether the submit honours an idempotency key: then a resumed run re-sends its run id as the key instead of looking for its orphan.',
      ),
    poll: z
      .strictObject({
        interval_ms: z.number().int().min(50).max(600_000).default(2000),
        max_interval_ms: z.number().int().min(50).max(3_600_000).default(15_000),
      })
      .default({ interval_ms: 2000, max_interval_ms: 15_000 })
      .describe("How often a job's status is read: from interval_ms, growing to max_interval_ms."),
    max_job_ms: z
      .number()
      .int()
      .min(1000)
      .max(86_400_000)
      .default(3_600_000)
      .describe('A job not finished by then is canceled and its run failed.'),
  })
  .superRefine((def, ctx) => {
    const captured = new Set(['id', ...Object.keys(def.submit.response.capture)]);
    const check = (value: unknown, where: (string | number)[], allowed: readonly string[]) => {
      for (const p of placeholders(value)) {
        const problem = placeholderProblem(p, allowed, captured);
        if (problem !== null) ctx.addIssue({ code: 'custom', path: where, message: problem });
      }
    };
    const beforeJob = NAMESPACES.filter((n) => n !== 'job' && n !== 'webhook_url');
    const afterJob = NAMESPACES.filter((n) => n !== 'webhook_url');
    check(def.submit.url, ['submit', 'url'], beforeJob);
    check(def.submit.body, ['submit', 'body'], beforeJob);
    check(def.submit.headers, ['submit', 'headers'], beforeJob);
    check(def.submit.webhook?.body, ['submit', 'webhook', 'body'], [...beforeJob, 'webhook_url']);
    check(def.submit.webhook?.query, ['submit', 'webhook', 'query'], [...beforeJob, 'webhook_url']);
    check(def.status.url, ['status', 'url'], afterJob);
    if (def.result !== undefined) check(def.result.url, ['result', 'url'], afterJob);
    if (def.cancel !== undefined) check(def.cancel.url, ['cancel', 'url'], afterJob);
    if (def.list !== undefined) check(def.list.url, ['list', 'url'], ['base_url', 'model']);
    if (def.outputs.from === 'result' && def.result === undefined) {
      ctx.addIssue({ code: 'custom', path: ['result'], message: 'is needed: outputs.from is "result"' });
    }
    const seen = new Map<string, string>();
    for (const kind of ['done', 'failed', 'canceled', 'running'] as const) {
      def.status[kind].forEach((s, i) => {
        const other = seen.get(s);
        if (other !== undefined)
          ctx.addIssue({ code: 'custom', path: ['status', kind, i], message: `"${s}" is also in status.${other}` });
        seen.set(s, kind);
      });
    }
    if (def.poll.max_interval_ms < def.poll.interval_ms) {
      ctx.addIssue({ code: 'custom', path: ['poll', 'max_interval_ms'], message: 'must be at least poll.interval_ms' });
    }
  });

export type ProviderDefinition = z.output<typeof ProviderDefinitionSchema>;

function placeholderProblem(p: Placeholder, allowed: readonly string[], captured: Set<string>): string | null {
  if (!allowed.includes(p.namespace)) {
    if (p.namespace === 'job') return `${p.text}: the job is not known yet here`;
    if (p.namespace === 'webhook_url') return `${p.text} goes only in submit.webhook`;
    return `${p.text} names nothing: placeholders are ${allowed.map((n) => `{${n}${n === 'request' || n === 'job' ? '.…' : ''}}`).join(', ')}`;
  }
  const needsField = p.namespace === 'request' || p.namespace === 'job';
  if (needsField && p.field === undefined)
    return `${p.text} needs a field, e.g. {${p.namespace}.${p.namespace === 'job' ? 'id' : 'prompt'}}`;
  if (!needsField && p.field !== undefined) return `${p.text}: {${p.namespace}} has no fields`;
  if (p.namespace === 'job' && !captured.has(p.field!)) {
    return `${p.text} is not captured: the job has "id"${
      captured.size > 1
        ? ` and ${[...captured]
            .slice(1)
            .map((c) => `"${c}"`)
            .join(', ')}`
        : ''
    } (add it to submit.response.capture)`;
  }
  return null;
}

/** The request fields a definition asks of the tools it serves ({request.FIELD} anywhere in it). */
export function requestFields(def: ProviderDefinition): string[] {
  return [
    ...new Set(
      placeholders(def)
        .filter((p) => p.namespace === 'request')
        .map((p) => p.field!),
    ),
  ].sort();
}

/** A definition that does not hold: each problem names its field. */
export class DefinitionError extends Error {
  constructor(
    readonly source: string,
    readonly problems: { field: string; message: string }[],
  ) {
    super(`${source}: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`);
    this.name = 'DefinitionError';
  }
}

const fieldOf = (issuePath: readonly PropertyKey[]) =>
  issuePath.reduce<string>(
    (at, step) => (typeof step === 'number' ? `${at}[${step}]` : at === '' ? String(step) : `${at}.${String(step)}`),
    '',
  ) || '(the file)';

/** A definition from parsed JSON, or the problems with it, each naming its field. */
export function parseDefinition(value: unknown, source: string): ProviderDefinition {
  const parsed = ProviderDefinitionSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw new DefinitionError(
    source,
    parsed.error.issues.map((issue) => {
      // An unknown key is reported at its object: name the key itself.
      const keys = issue.code === 'unrecognized_keys' ? issue.keys : [];
      const field = keys.length === 1 ? fieldOf([...issue.path, keys[0]!]) : fieldOf(issue.path);
      const message =
        keys.length === 1
          ? 'is not a field of a provider definition (misspelt?)'
          : /received undefined$/.test(issue.message)
            ? `is missing (${issue.message.replace(/^Invalid input: /, '')})`
            : issue.message;
      return { field, message };
    }),
  );
}

/** Reads and checks a definition file (JSON). */
export function loadDefinition(file: string): ProviderDefinition {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new DefinitionError(file, [{ field: '(the file)', message: `cannot be read: ${(err as Error).message}` }]);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new DefinitionError(file, [{ field: '(the file)', message: `is not JSON: ${(err as Error).message}` }]);
  }
  return parseDefinition(value, file);
}

/** The definition format as JSON Schema, for editors and `runledger providers schema`. */
export function definitionJsonSchema(): object {
  return z.toJSONSchema(ProviderDefinitionSchema, { io: 'input', target: 'draft-2020-12' });
}

/** What a definition says, in lines a person checks it against: `runledger providers check`. */
export function describeDefinition(def: ProviderDefinition, env: NodeJS.ProcessEnv = process.env): string {
  const has = (name: string) => (env[name] !== undefined && env[name] !== '' ? 'set' : 'NOT set');
  const lines = [
    `${def.name}${def.title === undefined ? '' : ` (${def.title})`}: model ${def.model}, base ${def.base_url}`,
    `  auth      ${def.auth.header}: ${def.auth.prefix}$${def.auth.env}  (${def.auth.env} is ${has(def.auth.env)} here; it goes to the API, never to output downloads)`,
    `  submit    ${def.submit.method} ${def.submit.url}`,
    `            request fields used: ${requestFields(def).join(', ') || '(none)'}`,
    `            job id at "${def.submit.response.id}"${Object.entries(def.submit.response.capture)
      .map(([k, v]) => `, ${k} at "${v}"`)
      .join('')}`,
    `            idempotency keys: ${def.idempotency.honoured ? `honoured (${def.idempotency.header}: the run id); a resumed run re-sends` : 'not honoured: a run submits once, and a lost handle is looked for, never re-sent blindly'}`,
    `  status    ${def.status.method} ${def.status.url}, every ${def.poll.interval_ms}–${def.poll.max_interval_ms} ms, at most ${def.max_job_ms} ms`,
    `            status at "${def.status.state}": done ${quoted(def.status.done)}; failed ${quoted(def.status.failed)}; canceled ${quoted(def.status.canceled)}; running ${quoted(def.status.running)}; anything else: queued`,
    `            error at ${def.status.error === undefined ? '(none)' : `"${def.status.error}"`}; progress ${def.status.progress === undefined ? '(not given)' : `at "${def.status.progress.path}" (0–${def.status.progress.scale})`}`,
    `  outputs   from the ${def.outputs.from === 'result' ? `result (${def.result!.method} ${def.result!.url})` : 'status answer'} at "${def.outputs.path}"${def.outputs.poster === undefined ? '' : `, poster at "${def.outputs.poster}"`}`,
    `  cancel    ${def.cancel === undefined ? '(none: a canceled run leaves its job to finish upstream)' : `${def.cancel.method} ${def.cancel.url}`}`,
    `  list      ${def.list === undefined ? '(none: an orphan is found by its webhook only)' : `${def.list.method} ${def.list.url}, items at "${def.list.items}", matched by ${[def.list.run_id === undefined ? null : `run id in "${def.list.run_id}"`, def.list.input === undefined ? null : `input ${def.list.input.fields.join(', ')}`, def.list.created_at === undefined ? null : 'time'].filter((m) => m !== null).join(' and ') || 'nothing (add run_id or input)'}`}`,
    `  webhooks  ${def.webhook === undefined ? '(none: polling only)' : `${def.webhook.signing.scheme}${def.webhook.signing.scheme === 'standard-webhooks' ? ` (secret in $${def.webhook.signing.secret_env}, ${has(def.webhook.signing.secret_env)} here)` : ` (keys from ${def.webhook.signing.jwks_url})`}, id in ${def.webhook.id_header}, job id at "${def.webhook.job_id}"`}`,
    `            ${def.submit.webhook === undefined ? 'submits ask for none' : `submits ask for them with ${[...Object.keys(def.submit.webhook.body ?? {}).map((k) => `body.${k}`), ...Object.keys(def.submit.webhook.query ?? {}).map((k) => `?${k}`)].join(', ')} (with --public-url)`}`,
  ];
  const needs = placeholders([def.status.url, def.result?.url, def.cancel?.url]).filter(
    (p) => p.namespace === 'job' && p.field !== 'id',
  );
  if (def.webhook !== undefined && needs.length > 0) {
    lines.push(
      `  note      ${[...new Set(needs.map((p) => p.text))].join(', ')}: a job found by its webhook after a crash carries only its id, so it could not be followed; prefer {job.id} in these URLs`,
    );
  }
  return lines.join('\n') + '\n';
}

const quoted = (list: readonly string[]) => (list.length === 0 ? '(none)' : list.map((s) => `"${s}"`).join(', '));
