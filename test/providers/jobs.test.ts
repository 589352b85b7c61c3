// The pieces of a job provider on their own: definition templates and paths, webhook signatures
// (Standard Webhooks and fal's Ed25519), and what an output's bytes say it is.
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseDefinition, requestFields, type DefinitionError } from '../../src/providers/definition.js';
import { createJobProvider } from '../../src/providers/jobs.js';
import { mediaFacts, sniffMedia } from '../../src/providers/media.js';
import { fill, fillText, readAll } from '../../src/providers/template.js';
import { falEd25519, signStandardWebhook, standardWebhooks } from '../../src/providers/webhook-signing.js';
import { fakeMp4, fakePng } from '../fixtures/jobs/media.js';

const shipped = (name: string) =>
  JSON.parse(readFileSync(new URL(`../../providers/${name}.json`, import.meta.url), 'utf8')) as Record<string, unknown>;

describe('definition templates', () => {
  const vars = {
    base_url: 'https://api.example/v1',
    model: 'owner/model',
    run_id: 'run_1',
    request: { prompt: 'a "quoted" mug', seed: 7, duration_seconds: 5 },
  };

  it('keeps a whole placeholder typed, sets inner ones as text, and drops keys the run has no value for', () => {
    const body = {
      input: {
        prompt: '{request.prompt}',
        seed: '{request.seed}',
        duration: '{request.duration_seconds|string}',
        image: '{request.image}',
        note: 'run {run_id} at {base_url}',
      },
    };
    expect(fill(body, vars)).toEqual({
      input: { prompt: 'a "quoted" mug', seed: 7, duration: '5', note: 'run run_1 at https://api.example/v1' },
    });
    expect(fill({ webhook: '{webhook_url}', filter: ['start', 'completed'] }, vars)).toEqual({
      filter: ['start', 'completed'],
    });
    expect(
      fillText('{base_url}/models/{model}/x/{job.id}', { ...vars, job: { id: 'a/b' } }, (p, t) =>
        p.namespace === 'job' ? encodeURIComponent(t) : t,
      ),
    ).toBe('https://api.example/v1/models/owner/model/x/a%2Fb');
    expect(fillText('{base_url}/{request.image}', vars)).toBeUndefined();
  });

  it('reads dotted paths through arrays', () => {
    const answer = {
      output: ['https://a/0.png', 'https://a/1.png'],
      images: [{ url: 'u0' }, { url: 'u1' }],
      video: { url: 'v' },
      none: null,
    };
    expect(readAll(answer, 'output')).toEqual(['https://a/0.png', 'https://a/1.png']);
    expect(readAll(answer, 'images.url')).toEqual(['u0', 'u1']);
    expect(readAll(answer, 'video.url')).toEqual(['v']);
    expect(readAll(answer, 'none')).toEqual([]);
    expect(readAll(answer, 'missing.path')).toEqual([]);
  });

  it('accepts the shipped definitions, and names the request fields each asks of a tool', () => {
    expect(requestFields(parseDefinition(shipped('replicate'), 'replicate.json'))).toEqual([
      'aspect',
      'duration_seconds',
      'image',
      'prompt',
      'seed',
    ]);
    expect(requestFields(parseDefinition(shipped('fal'), 'fal.json'))).toEqual([
      'duration_seconds',
      'image',
      'prompt',
      'seed',
    ]);
    const err = (() => {
      try {
        parseDefinition(
          { ...shipped('fal'), name: 'openai', outputs: { from: 'result', path: 'video.url' }, result: undefined },
          'x.json',
        );
      } catch (e) {
        return e as DefinitionError;
      }
      return null;
    })();
    expect(err?.problems).toEqual([
      { field: 'name', message: 'is the name of a built-in provider' },
      { field: 'result', message: 'is needed: outputs.from is "result"' },
    ]);
  });

  it("accepts the README's example definition", () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const example = /## Job providers[\s\S]*?```json\n([\s\S]*?)```/.exec(readme)![1]!;
    expect(parseDefinition(JSON.parse(example), 'README.md').name).toBe('my-queue');
  });

  it('builds the submit a definition describes, with the webhook only when there is a URL', () => {
    const replicate = createJobProvider(parseDefinition(shipped('replicate'), 'replicate.json'), {
      REPLICATE_API_TOKEN: 'r8_x',
    });
    const request = { prompt: 'p', image: 'data:image/png;base64,AA', duration_seconds: 5, aspect: '16:9', seed: 3 };
    expect(replicate.submitBody(request, 'run_1', null)).toEqual({
      input: { prompt: 'p', image: 'data:image/png;base64,AA', duration: 5, aspect_ratio: '16:9', seed: 3 },
    });
    expect(replicate.submitBody(request, 'run_1', 'https://rl.example/webhooks/replicate?run=run_1')).toMatchObject({
      webhook: 'https://rl.example/webhooks/replicate?run=run_1',
      webhook_events_filter: ['start', 'completed'],
    });
    expect(replicate).toMatchObject({
      honoursKeys: false,
      canList: true,
      canCancel: true,
      asksForWebhooks: true,
      webhooks: null,
    });
  });
});

describe('webhook signatures', () => {
  const secret = `whsec_${Buffer.from('a secret of thirty-two bytes....').toString('base64')}`;
  const body = Buffer.from('{"id":"p1","status":"succeeded"}');
  const now = Date.UTC(2026, 5, 1, 12);
  const ts = Math.floor(now / 1000);
  const headers = (over: Record<string, string> = {}) => ({
    'webhook-id': 'msg_1',
    'webhook-timestamp': String(ts),
    'webhook-signature': signStandardWebhook(secret, 'msg_1', ts, body.toString()),
    ...over,
  });

  it('accepts a Standard Webhooks signature among several, and refuses a wrong one, a changed body, or a timestamp over five minutes off', async () => {
    const verifier = standardWebhooks(secret);
    expect(await verifier.verify(headers(), body, now)).toEqual({ ok: true, webhookId: 'msg_1' });
    expect(
      await verifier.verify(
        headers({ 'webhook-signature': `v1,bm90IGl0 ${headers()['webhook-signature']}` }),
        body,
        now,
      ),
    ).toEqual({ ok: true, webhookId: 'msg_1' });
    expect(await verifier.verify(headers({ 'webhook-signature': 'v1,bm90IGl0' }), body, now)).toEqual({
      ok: false,
      reason: 'no signature matches',
    });
    expect(await verifier.verify(headers(), Buffer.from('{"id":"p1","status":"failed"}'), now)).toMatchObject({
      ok: false,
    });
    expect(await verifier.verify(headers(), body, now + 301_000)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/stale or replayed/),
    });
    expect(await verifier.verify(headers(), body, now - 301_000)).toMatchObject({ ok: false });
    expect(await verifier.verify(headers(), body, now + 299_000)).toMatchObject({ ok: true });
    expect(
      await standardWebhooks(`whsec_${Buffer.from('another').toString('base64')}`).verify(headers(), body, now),
    ).toMatchObject({ ok: false });
    expect(await verifier.verify({ 'webhook-timestamp': String(ts) }, body, now)).toEqual({
      ok: false,
      reason: 'missing webhook-id',
    });
  });

  it("accepts fal's Ed25519 signature with the published keys, fetching them again when the signing key rotated", async () => {
    const old = generateKeyPairSync('ed25519');
    const next = generateKeyPairSync('ed25519');
    let published = [old.publicKey.export({ format: 'jwk' })];
    let fetched = 0;
    const verifier = falEd25519(
      'https://keys.example/jwks.json',
      'x-fal-webhook-request-id',
      async () => (fetched++, published),
    );
    const signed = (key: typeof old.privateKey, over: Record<string, string> = {}, at = ts) => {
      const message = `req_1\nuser_1\n${at}\n${createHash('sha256').update(body).digest('hex')}`;
      return {
        'x-fal-webhook-request-id': 'req_1',
        'x-fal-webhook-user-id': 'user_1',
        'x-fal-webhook-timestamp': String(at),
        'x-fal-webhook-signature': sign(null, Buffer.from(message), key).toString('hex'),
        ...over,
      };
    };
    expect(await verifier.verify(signed(old.privateKey), body, now)).toEqual({ ok: true, webhookId: 'req_1' });
    expect(
      await verifier.verify(signed(old.privateKey, { 'x-fal-webhook-user-id': 'user_2' }), body, now),
    ).toMatchObject({ ok: false });
    expect(await verifier.verify(signed(old.privateKey), body, now + 600_000)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/stale/),
    });
    expect(fetched).toBe(1);
    published = [next.publicKey.export({ format: 'jwk' })];
    // Within a minute of the last fetch an unknown key is refused without fetching (no fetch per forged webhook)...
    expect(await verifier.verify(signed(next.privateKey), body, now)).toMatchObject({ ok: false });
    expect(fetched).toBe(1);
    // ...after it, the keys are fetched again and the new one is found.
    const later = now + 120_000;
    expect(await verifier.verify(signed(next.privateKey, {}, Math.floor(later / 1000)), body, later)).toEqual({
      ok: true,
      webhookId: 'req_1',
    });
    expect(fetched).toBe(2);
  });
});

describe('outputs by their bytes', () => {
  it('tells PNG, JPEG, WebP, MP4 and WebM from anything else, and reads an MP4 header', () => {
    const mp4 = fakeMp4(1280, 720, 5, 'frames');
    expect(sniffMedia(mp4)).toBe('video/mp4');
    expect(mediaFacts(mp4, 'video/mp4')).toEqual({ width: 1280, height: 720, durationSeconds: 5 });
    const png = fakePng(64, 32);
    expect(sniffMedia(png)).toBe('image/png');
    expect(mediaFacts(png, 'image/png')).toEqual({ width: 64, height: 32, durationSeconds: null });
    expect(sniffMedia(Buffer.from([0xff, 0xd8, 0xff, 0xe0]))).toBe('image/jpeg');
    expect(sniffMedia(Buffer.from('RIFF\0\0\0\0WEBPVP8 '))).toBe('image/webp');
    expect(sniffMedia(Buffer.concat([Buffer.from([0x1a, 0x45, 0xdf, 0xa3]), Buffer.from('\x93B\x82\x84webm')]))).toBe(
      'video/webm',
    );
    expect(sniffMedia(Buffer.from('<html>expired</html>'))).toBeNull();
    expect(sniffMedia(Buffer.from('{"error":"x"}'))).toBeNull();
  });
});
