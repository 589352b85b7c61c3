// Webhook signatures, checked before anything of a webhook is believed. Two schemes:
//  - Standard Webhooks (Replicate and many others): HMAC-SHA256 over "id.timestamp.body" with the
//    base64 secret after "whsec_", in `webhook-signature: v1,<base64> ...`; `webhook-id` and
//    `webhook-timestamp` (Unix seconds) beside it.
//  - fal: Ed25519 over "request-id\nuser-id\ntimestamp\nsha256hex(body)", hex in
//    `x-fal-webhook-signature`, the keys from fal's published JWKS.
// Either way a timestamp more than five minutes from this clock is refused: a captured webhook cannot
// be replayed later. Comparisons are constant-time.
import {
  createHash,
  createHmac,
  createPublicKey,
  timingSafeEqual,
  verify,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import type { ProviderDefinition } from './definition.js';

/** How far a webhook's timestamp may be from this clock, either way. */
export const WEBHOOK_TOLERANCE_S = 300;

export type Verdict = { ok: true; webhookId: string } | { ok: false; reason: string };

export interface WebhookVerifier {
  verify(headers: Record<string, string | string[] | undefined>, body: Buffer, nowMs?: number): Promise<Verdict>;
}

const header = (headers: Record<string, string | string[] | undefined>, name: string): string | undefined => {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
};

function fresh(timestamp: string | undefined, nowMs: number): string | null {
  if (timestamp === undefined || !/^\d{1,12}$/.test(timestamp)) return 'no usable timestamp';
  const skew = Math.abs(nowMs / 1000 - Number(timestamp));
  return skew > WEBHOOK_TOLERANCE_S
    ? `its timestamp is ${Math.round(skew)} s from this clock (more than ${WEBHOOK_TOLERANCE_S} s): stale or replayed`
    : null;
}

/** Standard Webhooks with the secret `whsec_<base64>` (the prefix is optional). */
export function standardWebhooks(secret: string, idHeader = 'webhook-id'): WebhookVerifier {
  const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64');
  return {
    async verify(headers, body, nowMs = Date.now()) {
      const id = header(headers, idHeader);
      const timestamp = header(headers, 'webhook-timestamp');
      const signatures = header(headers, 'webhook-signature');
      if (id === undefined || signatures === undefined)
        return { ok: false, reason: `missing ${id === undefined ? idHeader : 'webhook-signature'}` };
      const stale = fresh(timestamp, nowMs);
      if (stale !== null) return { ok: false, reason: stale };
      const expected = createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest();
      for (const entry of signatures.split(' ')) {
        const [version, value] = entry.split(',', 2);
        if (version !== 'v1' || value === undefined) continue;
        const given = Buffer.from(value, 'base64');
        if (given.length === expected.length && timingSafeEqual(given, expected)) return { ok: true, webhookId: id };
      }
      return { ok: false, reason: 'no signature matches' };
    },
  };
}

/** Signs as a Standard Webhooks sender does: what the tests' fake providers use. */
export function signStandardWebhook(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

/** How long fetched public keys are trusted, and how soon an unknown signature may fetch them again. */
const JWKS_TTL_MS = 24 * 3600_000;
const JWKS_REFETCH_MS = 60_000;

/** fal's Ed25519 webhooks, the keys read from `jwksUrl`. */
export function falEd25519(
  jwksUrl: string,
  idHeader = 'x-fal-webhook-request-id',
  fetchKeys = defaultFetchKeys,
): WebhookVerifier {
  let keys: { at: number; list: KeyObject[] } | null = null;
  const load = async (force: boolean, now: number): Promise<KeyObject[]> => {
    if (keys !== null && now - keys.at < (force ? JWKS_REFETCH_MS : JWKS_TTL_MS)) return keys.list;
    const list = (await fetchKeys(jwksUrl))
      .filter((k) => k.kty === 'OKP' && k.crv === 'Ed25519' && typeof k.x === 'string')
      .map((k) => createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: k.x }, format: 'jwk' }));
    keys = { at: now, list };
    return list;
  };
  return {
    async verify(headers, body, nowMs = Date.now()) {
      const requestId = header(headers, 'x-fal-webhook-request-id');
      const userId = header(headers, 'x-fal-webhook-user-id');
      const timestamp = header(headers, 'x-fal-webhook-timestamp');
      const signature = header(headers, 'x-fal-webhook-signature');
      const id = header(headers, idHeader);
      if (requestId === undefined || userId === undefined || signature === undefined || id === undefined)
        return { ok: false, reason: 'missing x-fal-webhook-* headers' };
      const stale = fresh(timestamp, nowMs);
      if (stale !== null) return { ok: false, reason: stale };
      if (!/^(?:[0-9a-f]{2})+$/i.test(signature)) return { ok: false, reason: 'the signature is not hex' };
      const message = Buffer.from(
        `${requestId}\n${userId}\n${timestamp}\n${createHash('sha256').update(body).digest('hex')}`,
      );
      const sig = Buffer.from(signature, 'hex');
      // Keys rotate: a signature no cached key verifies fetches them again (at most once a minute).
      for (const force of [false, true]) {
        let list: KeyObject[];
        try {
          list = await load(force, nowMs);
        } catch (err) {
          return { ok: false, reason: `the provider's public keys could not be read: ${(err as Error).message}` };
        }
        if (list.some((key) => verify(null, message, key, sig))) return { ok: true, webhookId: id };
      }
      return { ok: false, reason: 'no signature matches' };
    },
  };
}

async function defaultFetchKeys(url: string): Promise<JsonWebKey[]> {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`HTTP ${response.status} from ${url}`);
  const body = (await response.json()) as { keys?: JsonWebKey[] };
  return Array.isArray(body.keys) ? body.keys : [];
}

/** The verifier a definition's webhook section asks for; null when it has none, or its secret is not in the environment. */
export function webhookVerifier(def: ProviderDefinition, env: NodeJS.ProcessEnv): WebhookVerifier | null {
  const signing = def.webhook?.signing;
  if (signing === undefined) return null;
  if (signing.scheme === 'fal-ed25519')
    return falEd25519(
      signing.jwks_url,
      def.webhook!.id_header === 'webhook-id' ? 'x-fal-webhook-request-id' : def.webhook!.id_header,
    );
  const secret = env[signing.secret_env]?.trim();
  return secret === undefined || secret === '' ? null : standardWebhooks(secret, def.webhook!.id_header);
}
