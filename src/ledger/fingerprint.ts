// Key rules and the request fingerprint: what makes two creates "the same request".
import * as crypto from 'node:crypto';
import { ValidationFailedError } from '../errors.js';
import type { JsonObject } from './types.js';

export const KEY_MIN = 16;
export const KEY_MAX = 128;
const PRINTABLE_ASCII = /^[\x21-\x7e]+$/;

export function keyProblem(key: unknown): string | null {
  if (key === undefined || key === null)
    return 'is required: one new key (a UUID) per logical request, the same key on every retry of it';
  if (typeof key !== 'string') return 'must be a string';
  if (key.length < KEY_MIN || key.length > KEY_MAX) {
    return `must be ${KEY_MIN}–${KEY_MAX} characters long (got ${key.length}); a UUID fits`;
  }
  if (!PRINTABLE_ASCII.test(key))
    return 'must be printable ASCII (0x21–0x7E): no spaces, control or non-ASCII characters';
  return null;
}

export function assertValidKey(key: unknown, field = 'idempotency_key'): asserts key is string {
  const rule = keyProblem(key);
  if (rule !== null) throw new ValidationFailedError([{ field, rule }]);
}

/** JSON with object keys sorted at every depth, so equal arguments give equal text. */
export function canonicalJson(value: unknown): string {
  // Hand-rolled rather than map/join: it runs on every create, replays included.
  if (typeof value !== 'object' || value === null) {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('non-finite number');
    return JSON.stringify(value) ?? 'null';
  }
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i] ?? null);
    return out + ']';
  }
  const object = value as JsonObject;
  let out = '{';
  for (const key of Object.keys(object).sort()) {
    const item = object[key];
    if (item === undefined) continue;
    out += (out.length === 1 ? '' : ',') + JSON.stringify(key) + ':' + canonicalJson(item);
  }
  return out + '}';
}

// crypto.hash (Node ≥ 20.12) skips the Hash object; fall back where it is missing.
const sha256Hex: (text: string) => string =
  typeof crypto.hash === 'function'
    ? (text) => crypto.hash('sha256', text, 'hex')
    : (text) => crypto.createHash('sha256').update(text).digest('hex');

/**
 * SHA-256 (hex) of the canonical JSON of the arguments. Per-call fields (idempotency_key, wait_seconds,
 * dry_run) are not arguments: mcp/ takes them off before a request reaches the ledger, while for an
 * upstream tool behind runledger proxy a `dry_run` is one of its own.
 */
export function fingerprint(args: JsonObject): string {
  return sha256Hex(canonicalJson(args));
}

/** The top-level fields whose values differ between two argument sets, sorted. */
export function differingFields(a: JsonObject, b: JsonObject): string[] {
  const names = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...names].filter((name) => canonicalJson(a[name] ?? null) !== canonicalJson(b[name] ?? null)).sort();
}
