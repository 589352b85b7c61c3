// A job provider: an asynchronous generation API (Replicate predictions, fal's queue) driven by a
// definition file. Submit is the paid step and answers a job handle; status is read by polling (and
// hastened by webhooks); outputs are fetched when the job succeeds; cancel and a list endpoint where
// the API has them. What each answer means is sorted here into typed outcomes the engine acts on:
// a submit that certainly made no job, one that certainly did, and one whose outcome is unknown.
import { setTimeout as sleep } from 'node:timers/promises';
import { GenerationFailedError } from '../errors.js';
import { canonicalJson } from '../ledger/fingerprint.js';
import type { JobHandle } from '../ledger/index.js';
import { requestFields, type ProviderDefinition } from './definition.js';
import { fill, fillText, read, readAll, readText, type Placeholder, type TemplateVars } from './template.js';
import { webhookVerifier, type WebhookVerifier } from './webhook-signing.js';

/** What a run asks of a job provider: values by field name ({request.FIELD} in the definition). */
export type JobRequest = Record<string, unknown>;

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'canceled';

export interface JobStatus {
  state: JobState;
  /** The provider's own word for it. */
  text: string;
  /** How far the job is, 0–1, when the provider says. */
  progress: number | null;
  error: string | null;
  /** Output URLs, when this answer has them (outputs.from "status"). */
  outputs: string[];
  poster: string | null;
}

/** The submit certainly made no job (throttled, refused at the door, or the connection never opened): it may be sent again. */
export class NotSubmitted extends Error {
  constructor(
    message: string,
    readonly waitMs: number | null,
  ) {
    super(message);
    this.name = 'NotSubmitted';
  }
}

/** The submit may or may not have made a job (a 5xx, a timeout, a cut connection, an answer without an id). */
export class SubmitOutcomeUnknown extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SubmitOutcomeUnknown';
  }
}

/** A call worth making again after a while, with the same handle: throttling, the provider's own errors, no answer. */
export class ProviderBusy extends Error {
  constructor(
    message: string,
    readonly waitMs: number | null,
  ) {
    super(message);
    this.name = 'ProviderBusy';
  }
}

/** The provider refused the job or lost it: the run fails, unbilled. */
export class JobRefused extends GenerationFailedError {}

/** A listed job that may be the run's orphan, and why it was taken for it. */
export interface OrphanCandidate {
  handle: JobHandle;
  by: 'run_id' | 'input_and_time';
  createdAt: string | null;
}

export interface JobProvider {
  readonly kind: 'job';
  readonly id: string;
  readonly model: string;
  readonly version: string;
  readonly definition: ProviderDefinition;
  /** The request fields its definition uses: a tool must give each. */
  readonly requestFields: string[];
  readonly honoursKeys: boolean;
  readonly canCancel: boolean;
  readonly canList: boolean;
  /** Whether submits ask for webhooks, given a public URL. */
  readonly asksForWebhooks: boolean;
  /** Checks this provider's webhooks; null when it has none (or no secret here). */
  readonly webhooks: WebhookVerifier | null;
  /** The body a submit sends: what an orphan's listed input is matched against. */
  submitBody(request: JobRequest, runId: string, webhookUrl: string | null): unknown;
  submit(
    request: JobRequest,
    ctx: { runId: string; webhookUrl: string | null; signal: AbortSignal },
  ): Promise<JobHandle>;
  status(job: JobHandle, signal: AbortSignal): Promise<JobStatus>;
  /** The output URLs of a job that succeeded, from the result document when the definition says so. */
  outputsOf(
    job: JobHandle,
    status: JobStatus,
    signal: AbortSignal,
  ): Promise<{ outputs: string[]; poster: string | null }>;
  /** 'canceled', or 'too_late' when the provider says the job has ended already. */
  cancel(job: JobHandle, signal: AbortSignal): Promise<'canceled' | 'too_late'>;
  /** Jobs that may be the run's orphan, submitted at `submittedAt` (ms) with `submittedBody`. */
  findOrphans(ctx: {
    runId: string;
    submittedBody: unknown;
    submittedAt: number;
    signal: AbortSignal;
  }): Promise<OrphanCandidate[]>;
  /** A verified webhook's job id and status text. */
  readWebhook(body: unknown): { jobId: string | null; status: string | null };
  close(): Promise<void>;
}

/** Retry-After as milliseconds: seconds, or an HTTP date. */
function retryAfterMs(header: string | null): number | null {
  if (header === null) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

/** How long an orphan's creation may be stamped before the submit began, for clocks that differ. */
const CLOCK_SKEW_MS = 120_000;
/** Calls of a submit certainly refused before it is given up (429s, connections refused). */
const SUBMIT_ATTEMPTS = 5;

const REFUSED_CONNECTION = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** Whether a fetch failed before a byte of the request could have reached the provider. */
function neverConnected(err: unknown): boolean {
  const cause = (err as { cause?: { code?: string } }).cause;
  return cause?.code !== undefined && REFUSED_CONNECTION.has(cause.code);
}

export function createJobProvider(def: ProviderDefinition, env: NodeJS.ProcessEnv = process.env): JobProvider {
  const apiKey = (env[def.auth.env] ?? '').trim();
  // Whatever a provider echoes back, the key never leaves this module in a message.
  const scrub = (text: string) => (apiKey === '' ? text : text.split(apiKey).join('[redacted]'));
  const vars = (extra: Partial<TemplateVars>): TemplateVars => ({
    base_url: def.base_url.replace(/\/+$/, ''),
    model: def.model,
    ...extra,
  });
  const jobVars = (job: JobHandle) => vars({ job: { id: job.jobId, ...job.fields } });
  /** URL templates escape what goes in a path segment; the definition's own values and captured URLs go as they are. */
  const urlEncode = (p: Placeholder, text: string) =>
    p.namespace === 'request' || p.namespace === 'run_id' || (p.namespace === 'job' && p.field === 'id')
      ? encodeURIComponent(text)
      : text;
  const url = (template: string, v: TemplateVars, where: string): string => {
    const filled = fillText(template, v, urlEncode);
    if (filled === undefined) {
      throw new JobRefused(
        `The ${def.name} definition's ${where} names a value this job does not have (${template}).`,
        { provider: def.name, template },
      );
    }
    return filled;
  };

  async function call(
    method: string,
    target: string,
    body: unknown,
    extraHeaders: Record<string, string>,
    signal: AbortSignal,
  ): Promise<Response> {
    const headers: Record<string, string> = {
      [def.auth.header]: `${def.auth.prefix}${apiKey}`,
      accept: 'application/json',
      ...extraHeaders,
    };
    if (body !== undefined) headers['content-type'] = 'application/json';
    return fetch(target, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.any([signal, AbortSignal.timeout(def.timeout_ms)]),
    });
  }

  /** The provider's own words for a failure: {"detail"}, {"error"}, {"error": {"message"}}, or the start of the body. */
  async function words(response: Response): Promise<string> {
    const text = await response.text().catch(() => '');
    try {
      const json = JSON.parse(text) as Record<string, unknown>;
      for (const candidate of [
        json.detail,
        json.error,
        (json.error as { message?: unknown } | undefined)?.message,
        json.message,
      ]) {
        if (typeof candidate === 'string' && candidate !== '') return scrub(candidate);
      }
    } catch {
      // not JSON: the text itself
    }
    return scrub(text.slice(0, 300) || response.statusText);
  }

  /** A read (status, result, list, cancel): 429 and 5xx and silence are worth another try; other 4xx end the job. */
  async function readCall(method: string, target: string, what: string, signal: AbortSignal): Promise<unknown> {
    let response: Response;
    try {
      response = await call(method, target, undefined, {}, signal);
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      throw new ProviderBusy(`${what}: ${scrub((err as Error).message)}`, null);
    }
    if (response.status === 429 || response.status >= 500) {
      throw new ProviderBusy(
        `${what}: HTTP ${response.status}: ${await words(response)}`,
        retryAfterMs(response.headers.get('retry-after')),
      );
    }
    if (!response.ok) {
      throw new JobRefused(`${def.name} refused ${what} (HTTP ${response.status}): ${await words(response)}`, {
        provider: def.name,
        status: response.status,
      });
    }
    const text = await response.text();
    try {
      return text === '' ? {} : JSON.parse(text);
    } catch {
      throw new ProviderBusy(`${what}: the answer was not JSON`, null);
    }
  }

  const stateOf = (text: string): JobState => {
    const s = def.status;
    if (s.done.includes(text)) return 'succeeded';
    if (s.failed.includes(text)) return 'failed';
    if (s.canceled.includes(text)) return 'canceled';
    return s.running.includes(text) ? 'running' : 'queued';
  };

  const outputsIn = (answer: unknown) => ({
    outputs: readAll(answer, def.outputs.path).filter((v): v is string => typeof v === 'string'),
    poster: def.outputs.poster === undefined ? null : (readText(answer, def.outputs.poster) ?? null),
  });

  const captured = (answer: unknown, capture: Record<string, string>) =>
    Object.fromEntries(
      Object.entries(capture).flatMap(([name, at]) => {
        const value = readText(answer, at);
        return value === undefined ? [] : [[name, value]];
      }),
    );

  const provider: JobProvider = {
    kind: 'job',
    id: def.name,
    model: def.model,
    version: `${def.name}:${def.model}`,
    definition: def,
    requestFields: requestFields(def),
    honoursKeys: def.idempotency.honoured,
    canCancel: def.cancel !== undefined,
    canList: def.list !== undefined,
    asksForWebhooks: def.submit.webhook !== undefined && def.webhook !== undefined,
    webhooks: webhookVerifier(def, env),

    submitBody(request, runId, webhookUrl) {
      const v = vars({ request, run_id: runId, ...(webhookUrl === null ? {} : { webhook_url: webhookUrl }) });
      const body = def.submit.body === undefined ? undefined : fill(def.submit.body, v);
      if (webhookUrl === null || def.submit.webhook?.body === undefined) return body;
      return {
        ...(body as Record<string, unknown> | undefined),
        ...(fill(def.submit.webhook.body, v) as Record<string, unknown>),
      };
    },

    async submit(request, { runId, webhookUrl, signal }) {
      const v = vars({ request, run_id: runId, ...(webhookUrl === null ? {} : { webhook_url: webhookUrl }) });
      let target = url(def.submit.url, v, 'submit.url');
      if (webhookUrl !== null && def.submit.webhook?.query !== undefined) {
        const withQuery = new URL(target);
        for (const [name, value] of Object.entries(def.submit.webhook.query)) {
          const filled = fillText(value, v);
          if (filled !== undefined) withQuery.searchParams.set(name, filled);
        }
        target = withQuery.toString();
      }
      const body = this.submitBody(request, runId, webhookUrl);
      const headers = (fill(def.submit.headers ?? {}, v) ?? {}) as Record<string, string>;
      if (def.idempotency.honoured) headers[def.idempotency.header] = runId;
      for (let attempt = 1; ; attempt++) {
        let response: Response;
        try {
          response = await call(def.submit.method, target, body, headers, signal);
        } catch (err) {
          if (signal.aborted) throw signal.reason;
          // Refused before it was sent: certainly no job. Anything later (a timeout, a reset): unknown.
          if (neverConnected(err))
            throw new NotSubmitted(`the submit could not connect: ${scrub((err as Error).message)}`, null);
          throw new SubmitOutcomeUnknown(`the submit got no answer: ${scrub((err as Error).message)}`);
        }
        if (response.status === 429) {
          const wait = retryAfterMs(response.headers.get('retry-after'));
          const message = `the submit was throttled (HTTP 429): ${await words(response)}`;
          if (attempt >= SUBMIT_ATTEMPTS) throw new NotSubmitted(message, wait);
          await sleep(
            Math.min(60_000, Math.max(wait ?? 0, 500 * 2 ** attempt * (0.5 + Math.random() / 2))),
            undefined,
            { signal },
          );
          continue;
        }
        if (response.status >= 500)
          throw new SubmitOutcomeUnknown(`the submit answered HTTP ${response.status}: ${await words(response)}`);
        if (!response.ok) {
          throw new JobRefused(`${def.name} refused the job (HTTP ${response.status}): ${await words(response)}`, {
            provider: def.name,
            status: response.status,
          });
        }
        let answer: unknown;
        try {
          answer = JSON.parse(await response.text());
        } catch {
          throw new SubmitOutcomeUnknown('the submit answered 2xx with a body that is not JSON');
        }
        const jobId = readText(answer, def.submit.response.id);
        if (jobId === undefined)
          throw new SubmitOutcomeUnknown(`the submit answered 2xx without a job id at "${def.submit.response.id}"`);
        return { provider: def.name, jobId, fields: captured(answer, def.submit.response.capture) };
      }
    },

    async status(job, signal) {
      const answer = await readCall(
        def.status.method,
        url(def.status.url, jobVars(job), 'status.url'),
        `the status of job ${job.jobId}`,
        signal,
      );
      const text = readText(answer, def.status.state);
      if (text === undefined)
        throw new ProviderBusy(`the status of job ${job.jobId} had no status at "${def.status.state}"`, null);
      let state = stateOf(text);
      const errorValue = def.status.error === undefined ? undefined : read(answer, def.status.error);
      const error =
        errorValue === undefined || errorValue === ''
          ? null
          : scrub(typeof errorValue === 'string' ? errorValue : JSON.stringify(errorValue));
      // An answer that says done and carries an error is a failure (fal says COMPLETED either way).
      if (state === 'succeeded' && error !== null) state = 'failed';
      const p = def.status.progress;
      const raw = p === undefined ? undefined : read(answer, p.path);
      const progress =
        typeof raw === 'number' && Number.isFinite(raw) ? Math.min(1, Math.max(0, raw / p!.scale)) : null;
      return {
        state,
        text,
        progress,
        error,
        ...(def.outputs.from === 'status' ? outputsIn(answer) : { outputs: [], poster: null }),
      };
    },

    async outputsOf(job, status, signal) {
      if (def.outputs.from === 'status') return { outputs: status.outputs, poster: status.poster };
      const answer = await readCall(
        def.result!.method,
        url(def.result!.url, jobVars(job), 'result.url'),
        `the result of job ${job.jobId}`,
        signal,
      );
      return outputsIn(answer);
    },

    async cancel(job, signal) {
      if (def.cancel === undefined) return 'too_late';
      try {
        await readCall(
          def.cancel.method,
          url(def.cancel.url, jobVars(job), 'cancel.url'),
          `the cancel of job ${job.jobId}`,
          signal,
        );
        return 'canceled';
      } catch (err) {
        // A 4xx to a cancel says the job cannot be canceled (it has ended): nothing more to do.
        if (err instanceof JobRefused) return 'too_late';
        throw err;
      }
    },

    async findOrphans({ runId, submittedBody, submittedAt, signal }) {
      const list = def.list;
      if (list === undefined) return [];
      const found: OrphanCandidate[] = [];
      const submittedInput = list.input === undefined ? undefined : read(submittedBody, list.input.submitted);
      let page: string | undefined = url(list.url, vars({}), 'list.url');
      for (let n = 0; page !== undefined && n < list.max_pages; n++) {
        const answer = await readCall(list.method, page, 'the list of jobs', signal);
        let older = false;
        for (const item of readAll(answer, list.items)) {
          const jobId = readText(item, list.id);
          if (jobId === undefined) continue;
          const handle: JobHandle = { provider: def.name, jobId, fields: captured(item, list.capture) };
          const created = list.created_at === undefined ? undefined : readText(item, list.created_at);
          const createdMs = created === undefined ? NaN : Date.parse(created);
          if (Number.isFinite(createdMs) && createdMs < submittedAt - CLOCK_SKEW_MS) {
            older = true;
            continue;
          }
          const carried = list.run_id === undefined ? undefined : readText(item, list.run_id);
          if (carried !== undefined && carried.includes(runId)) {
            found.push({ handle, by: 'run_id', createdAt: created ?? null });
            continue;
          }
          // By input and time: only with a creation time to bound it, and every compared field equal.
          if (list.input === undefined || !Number.isFinite(createdMs)) continue;
          const listed = read(item, list.input.listed);
          const same = list.input.fields.every(
            (f) => canonicalJson(read(listed, f) ?? null) === canonicalJson(read(submittedInput, f) ?? null),
          );
          if (same) found.push({ handle, by: 'input_and_time', createdAt: created ?? null });
        }
        // Lists come newest first: a page that reached jobs older than the submit ends the search.
        if (older) break;
        const next = list.next === undefined ? undefined : readText(answer, list.next);
        page = next === undefined || next === '' ? undefined : next;
      }
      return found;
    },

    readWebhook(body) {
      const hook = def.webhook;
      if (hook === undefined) return { jobId: null, status: null };
      return {
        jobId: readText(body, hook.job_id) ?? null,
        status: hook.state === undefined ? null : (readText(body, hook.state) ?? null),
      };
    },

    close: async () => undefined,
  };
  return provider;
}

/** A definition's request fields a tool does not give, if any. */
export function missingFields(provider: Pick<JobProvider, 'requestFields'>, given: readonly string[]): string[] {
  return provider.requestFields.filter((f) => !given.includes(f));
}
