// An OpenAI-compatible image provider: POST {base}/images/generations, one image a call. The run id and
// variant go downstream as Idempotency-Key, for the providers and gateways that honour one; runledger
// itself records each call before making it, so it never makes a second one for the same image
// (the engine's side of that promise). Throttling, server errors and timeouts are retried inside the
// run, with backoff and jitter; a refusal (any other 4xx) ends the run unbilled.
import { setTimeout as sleep } from 'node:timers/promises';
import { GenerationFailedError } from '../errors.js';
import type { Logger } from '../log.js';
import { imageSize, sniffMime } from '../rubric/pixels.js';
import type { GeneratedImage, ImageRequest, Provider } from './index.js';

export interface OpenAiOptions {
  /** The API base, e.g. https://api.openai.com/v1 or a gateway's. */
  baseUrl: string;
  model: string;
  apiKey: string;
  /** The sizes the model accepts ("WxH"), or "any" for a gateway that takes whatever it is asked. */
  sizes: { width: number; height: number }[] | 'any';
  /** Cut-off for one HTTP exchange, upload to last byte. */
  timeoutMs: number;
  /** Calls made for one image before giving up on throttling, server errors and timeouts. */
  maxAttempts?: number;
  log: Logger;
}

/** Backoff between retries: exponential from this, capped, with full jitter; Retry-After wins when longer. */
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 8000;
/** The longest Retry-After obeyed: past it the run fails now rather than wait that long. */
const RETRY_AFTER_MAX_MS = 60_000;

/** The accepted size closest in aspect ratio to the one asked for (then the closest in area). */
export function chooseSize(
  width: number,
  height: number,
  sizes: OpenAiOptions['sizes'],
): { width: number; height: number } {
  if (sizes === 'any') return { width, height };
  const aspect = Math.log(width / height);
  const score = (s: { width: number; height: number }) =>
    [Math.abs(Math.log(s.width / s.height) - aspect), Math.abs(s.width * s.height - width * height)] as const;
  return [...sizes].sort((a, b) => {
    const [aa, ab] = score(a);
    const [ba, bb] = score(b);
    return aa - ba || ab - bb;
  })[0]!;
}

/** Retry-After as milliseconds: seconds, or an HTTP date. */
function retryAfterMs(header: string | null, now = Date.now()): number | null {
  if (header === null) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/** A failure worth another try (throttled, the server's fault, or no answer in time). */
class Retryable extends Error {
  constructor(
    message: string,
    readonly waitMs: number | null,
  ) {
    super(message);
    this.name = 'Retryable';
  }
}

export function createOpenAiProvider(opts: OpenAiOptions): Provider {
  const endpoint = `${opts.baseUrl.replace(/\/+$/, '')}/images/generations`;
  const maxAttempts = opts.maxAttempts ?? 4;
  // Whatever a gateway echoes back, the key never leaves this module in a message.
  const scrub = (text: string) => (opts.apiKey === '' ? text : text.split(opts.apiKey).join('[redacted]'));

  async function call(
    request: Extract<ImageRequest, { kind: 'prompt' }>,
    idempotencyKey: string,
    signal: AbortSignal,
  ): Promise<GeneratedImage> {
    const size = chooseSize(request.width, request.height, opts.sizes);
    const timeout = AbortSignal.any([signal, AbortSignal.timeout(opts.timeoutMs)]);
    let response: Response;
    try {
      response = await fetch(endpoint, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${opts.apiKey}`,
          'content-type': 'application/json',
          'idempotency-key': idempotencyKey,
        },
        body: JSON.stringify({ model: opts.model, prompt: request.prompt, n: 1, size: `${size.width}x${size.height}` }),
        signal: timeout,
      });
      const requestId = response.headers.get('x-request-id') ?? undefined;
      if (response.ok) return await readImage(response, requestId, timeout);
      const message = scrub(await errorMessage(response));
      if (response.status === 429 || response.status >= 500) {
        throw new Retryable(`HTTP ${response.status}: ${message}`, retryAfterMs(response.headers.get('retry-after')));
      }
      throw new GenerationFailedError(`The image provider refused the request (HTTP ${response.status}): ${message}`, {
        provider: 'openai',
        status: response.status,
        ...(requestId === undefined ? {} : { request_id: requestId }),
      });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      if (err instanceof Retryable || err instanceof GenerationFailedError) throw err;
      // No answer in time, a reset connection, an unreadable body: the call may or may not have
      // happened, and the same key goes out again.
      const why = timeout.aborted
        ? `no answer within ${opts.timeoutMs} ms`
        : scrub(err instanceof Error ? err.message : String(err));
      throw new Retryable(why, null);
    }
  }

  async function readImage(
    response: Response,
    requestId: string | undefined,
    signal: AbortSignal,
  ): Promise<GeneratedImage> {
    const answer = (await response.json()) as { data?: { b64_json?: string; url?: string }[] };
    const item = answer.data?.[0];
    let bytes: Buffer;
    if (typeof item?.b64_json === 'string') {
      bytes = Buffer.from(item.b64_json, 'base64');
    } else if (typeof item?.url === 'string') {
      // Fetched once and stored; the URL itself (often signed, always short-lived) is not kept.
      const image = await fetch(item.url, { signal });
      if (!image.ok) throw new Retryable(`fetching the image answered HTTP ${image.status}`, null);
      bytes = Buffer.from(await image.arrayBuffer());
    } else {
      throw new GenerationFailedError('The image provider answered without an image (no data[0].b64_json or url).', {
        provider: 'openai',
      });
    }
    const size = imageSize(bytes);
    if (size === null)
      throw new GenerationFailedError('The image provider answered with bytes that are not a PNG or JPEG image.', {
        provider: 'openai',
      });
    return {
      bytes,
      mime: sniffMime(bytes)!,
      width: size.width,
      height: size.height,
      ...(requestId === undefined ? {} : { requestId }),
    };
  }

  return {
    kind: 'image',
    id: 'openai',
    model: opts.model,
    version: `openai:${opts.model}`,
    accepts: 'prompt',
    billsPerCall: true,
    async generate(request, { idempotencyKey, signal }) {
      if (request.kind !== 'prompt') throw new Error('an OpenAI-compatible provider draws prompts, not scenes');
      for (let attempt = 1; ; attempt++) {
        try {
          return await call(request, idempotencyKey, signal);
        } catch (err) {
          if (!(err instanceof Retryable)) throw err;
          const backoff = Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** (attempt - 1));
          const wait = Math.max(backoff, err.waitMs ?? 0);
          if (attempt >= maxAttempts || wait > RETRY_AFTER_MAX_MS) {
            throw new GenerationFailedError(
              `The image provider kept failing: ${err.message} (after ${attempt} attempt(s)).`,
              {
                provider: 'openai',
                attempts: attempt,
              },
            );
          }
          opts.log.warn('image provider call failed; retrying with the same key', {
            key: idempotencyKey,
            attempt,
            error: err.message,
            wait_ms: Math.round(wait),
          });
          await sleep(wait, undefined, { signal });
        }
      }
    },
    close: async () => undefined,
  };
}

/** The provider's own words for a failure: OpenAI's {"error": {"message"}}, or the start of the body. */
async function errorMessage(response: Response): Promise<string> {
  const text = await response.text().catch(() => '');
  try {
    const message = (JSON.parse(text) as { error?: { message?: unknown } }).error?.message;
    if (typeof message === 'string') return message;
  } catch {
    // not JSON: the text itself
  }
  return text.slice(0, 300) || response.statusText;
}
