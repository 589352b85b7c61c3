// Test helpers for job providers: the shipped definitions pointed at a fake provider, the environment a
// server needs for them, and a loopback port both a killed server and its successor can serve on.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FakeProvider } from '../fixtures/jobs/fake-providers.js';

type Json = { [key: string]: unknown };

/** `base` with `over` merged in, key by key; a null in `over` removes the key. */
function merged(base: Json, over: Json): Json {
  const out: Json = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === null) delete out[key];
    else if (typeof value === 'object' && !Array.isArray(value) && typeof out[key] === 'object' && out[key] !== null)
      out[key] = merged(out[key] as Json, value as Json);
    else out[key] = value;
  }
  return out;
}

/** A shipped definition (providers/<name>.json) aimed at `fake`, polled fast unless `over` says otherwise; its file. */
export function definitionFor(
  name: 'replicate' | 'fal',
  fake: FakeProvider & { jwksUrl?: string },
  over: Json = {},
): string {
  const shipped = JSON.parse(readFileSync(new URL(`../../providers/${name}.json`, import.meta.url), 'utf8')) as Json;
  delete shipped.$schema;
  const aimed: Json = { base_url: fake.base, poll: { interval_ms: 100, max_interval_ms: 500 } };
  if (fake.jwksUrl !== undefined) aimed.webhook = { signing: { scheme: 'fal-ed25519', jwks_url: fake.jwksUrl } };
  const file = join(mkdtempSync(join(tmpdir(), 'runledger-provider-')), `${name}.json`);
  writeFileSync(file, JSON.stringify(merged(merged(shipped, aimed), over), null, 2));
  return file;
}

/** What a server needs in its environment for the fake's definition. */
export function providerEnv(
  name: 'replicate' | 'fal',
  fake: FakeProvider & { webhookSecret?: string },
): Record<string, string> {
  return name === 'replicate'
    ? { REPLICATE_API_TOKEN: fake.token, REPLICATE_WEBHOOK_SECRET: fake.webhookSecret ?? '' }
    : { FAL_KEY: fake.token };
}

/** A loopback port free now (a server killed and its successor both serve on it, so webhooks reach either). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export const VIDEO = {
  brief: 'The bottle turns slowly on a wet stone ledge, morning light, the camera pushes in.',
  product_name: 'Cold Brew No. 7',
  product_shot: 'https://images.example/cold-brew.png',
  duration_seconds: 5,
  aspect: '16:9',
};
