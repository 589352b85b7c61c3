import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { DEFAULT_BRAND_KIT, type BrandKit } from '../../src/brand.js';
import { openSqliteLedger } from '../../src/ledger/sqlite/store.js';
import { mcpTools } from '../../src/mcp/server.js';
import { renderScene } from '../../src/providers/builtin.js';
import { evaluate } from '../../src/rubric/index.js';
import { RunService } from '../../src/runs.js';
import type { Scene, TextElement } from '../../src/compose/scene.js';
import { catalogue } from '../../tools/index.js';
import productShot from '../../tools/product_shot.js';
import socialCard from '../../tools/social_card.js';

const KEY_RULE =
  'Make one new key (a UUID) per logical request; when retrying after a timeout or an error, send the SAME key — a new key starts a new, billed run.';

/** The first issue's path and message, as an agent would read them. */
function rejection(schema: z.ZodType, value: unknown): string {
  const result = schema.safeParse(value);
  expect(result.success).toBe(false);
  const issue = result.error!.issues[0]!;
  return `${issue.path.join('.')}: ${issue.message}`;
}

describe('catalogue', () => {
  it('lists the tools in a stable order with unique snake_case names', () => {
    expect(catalogue.map((t) => t.name)).toEqual(['product_shot', 'social_card', 'product_video']);
    for (const tool of catalogue) expect(tool.name).toMatch(/^[a-z][a-z0-9_]*$/);
  });

  it('tells the agent the key rule, the cost and to poll rather than create again', async () => {
    // What an agent reads is the listed description: the tool's own words plus what the machinery adds.
    const ledger = await openSqliteLedger({ path: ':memory:' });
    const listed = mcpTools(new RunService(ledger), catalogue).map((entry) => entry.definition);
    for (const tool of catalogue) {
      const description = listed.find((d) => d.name === `create_${tool.name}`)!.description;
      expect(description).toContain(KEY_RULE);
      expect(description).toMatch(/Cost: \d+ credits/);
      expect(description).toContain('poll_run');
      expect(tool.description).not.toContain(KEY_RULE);
    }
    await ledger.close();
  });

  it('leaves idempotency_key, wait_seconds and dry_run to the server and offers an optional seed', () => {
    for (const tool of catalogue) {
      const fields = Object.keys(tool.input.shape);
      expect(fields).not.toContain('idempotency_key');
      expect(fields).not.toContain('wait_seconds');
      expect(fields).not.toContain('dry_run');
      expect(fields).toContain('seed');
      expect(tool.input.shape.seed!.safeParse(undefined).success).toBe(true);
    }
  });

  it('converts every input schema to JSON Schema with a description on each field', () => {
    for (const tool of catalogue) {
      const schema = z.toJSONSchema(tool.input, { io: 'input' }) as {
        properties: Record<string, { description?: string }>;
      };
      for (const [field, prop] of Object.entries(schema.properties)) {
        expect(prop.description, `${tool.name}.${field}`).toBeTruthy();
      }
    }
  });
});

describe('product_shot input', () => {
  const minimal = { brief: 'A steel bottle.', product_name: 'Flask' };

  it('fills every default so normalised arguments are complete', () => {
    expect(productShot.input.parse(minimal)).toEqual({
      ...minimal,
      brand_kit: DEFAULT_BRAND_KIT,
      size: '1:1',
      variants: 1,
      style: 'studio',
    });
  });

  it('accepts an explicit size within 256–2048 and rejects one outside it', () => {
    expect(productShot.input.parse({ ...minimal, size: { width: 800, height: 600 } }).size).toEqual({
      width: 800,
      height: 600,
    });
    expect(productShot.input.safeParse({ ...minimal, size: { width: 100, height: 600 } }).success).toBe(false);
    expect(productShot.input.safeParse({ ...minimal, size: '2:1' }).success).toBe(false);
  });

  it('rejects 5 variants, a fractional seed and an unknown style', () => {
    expect(rejection(productShot.input, { ...minimal, variants: 5 })).toMatch(/^variants: /);
    expect(rejection(productShot.input, { ...minimal, seed: 1.5 })).toMatch(/^seed: /);
    expect(rejection(productShot.input, { ...minimal, seed: 2 ** 32 })).toMatch(/^seed: /);
    expect(rejection(productShot.input, { ...minimal, style: 'noir' })).toMatch(/^style: /);
  });

  it('rejects a bad hex colour, naming the field and the rule', () => {
    const brand_kit = { ...DEFAULT_BRAND_KIT, palette: [{ hex: '#12345', role: 'primary' }] };
    expect(rejection(productShot.input, { ...minimal, brand_kit })).toBe(
      'brand_kit.palette.0.hex: must be a hex colour like #1F3A5F: "#" then six hex digits',
    );
  });

  it('rejects a brand kit with 9 colours, an unknown role or an unknown rubric check', () => {
    const nine = Array.from({ length: 9 }, () => ({ hex: '#000000', role: 'accent' }));
    expect(rejection(productShot.input, { ...minimal, brand_kit: { ...DEFAULT_BRAND_KIT, palette: nine } })).toBe(
      'brand_kit.palette: must have at most 8 colours',
    );
    const role = [{ hex: '#000000', role: 'highlight' }];
    expect(rejection(productShot.input, { ...minimal, brand_kit: { ...DEFAULT_BRAND_KIT, palette: role } })).toMatch(
      /^brand_kit\.palette\.0\.role: /,
    );
    const weights = { ...DEFAULT_BRAND_KIT, rubric_weights: { sharpness: 1 } };
    expect(productShot.input.safeParse({ ...minimal, brand_kit: weights }).success).toBe(false);
    const heavy = { ...DEFAULT_BRAND_KIT, rubric_weights: { size: 2 } };
    expect(rejection(productShot.input, { ...minimal, brand_kit: heavy })).toMatch(
      /^brand_kit\.rubric_weights\.size: /,
    );
  });

  it('costs 4 credits per variant and composes one scene per variant, each different', () => {
    const args = productShot.input.parse({ ...minimal, variants: 3 });
    expect(productShot.cost(args)).toBe(12);
    const scenes = productShot.compose(args, 77);
    expect(scenes).toHaveLength(3);
    expect(new Set(scenes.map((s) => JSON.stringify(s))).size).toBe(3);
  });

  it('sets a short tagline: the one given, else a line from the brief, never the whole brief', () => {
    const brief = 'A ceramic mug for slow mornings, shot in soft morning light with room for a headline.';
    const bodyOf = (raw: object) =>
      productShot
        .compose(productShot.input.parse({ ...minimal, ...raw }), 1)[0]!
        .elements.find((e): e is TextElement => e.kind === 'text' && e.id === 'body')
        ?.lines.join(' ');
    expect(bodyOf({ brief })).toBe('A ceramic mug for slow mornings.');
    expect(bodyOf({ brief, tagline: 'Made for the first cup.' })).toBe('Made for the first cup.');
    expect(bodyOf({ brief, tagline: '' })).toBeUndefined();
    expect(bodyOf({ brief: 'Overhead shot, warm light, room for a headline.' })).toBeUndefined();
  });

  it('composes variants that differ in layout, framing and colour, not by a shift', () => {
    for (const style of ['studio', 'bold', 'lifestyle', 'minimal'] as const) {
      for (const size of ['1:1', '16:9', '9:16'] as const) {
        const args = productShot.input.parse({ ...minimal, style, size, variants: 2 });
        for (const seed of [1, 2, 3]) {
          const [a, b] = productShot.compose(args, seed) as [Scene, Scene];
          const headline = (s: Scene) =>
            s.elements.find((e): e is TextElement => e.kind === 'text' && e.id === 'headline')!.box;
          const [ha, hb] = [headline(a), headline(b)];
          // The text moved to another part of the canvas (above, below, beside), or the colours changed.
          const moved = Math.abs(ha.x - hb.x) > a.width * 0.2 || Math.abs(ha.y - hb.y) > a.height * 0.2;
          const fills = (s: Scene) => JSON.stringify(s.elements.flatMap((e) => ('fill' in e ? [e.fill] : [])));
          expect(moved || fills(a) !== fills(b), `${style} ${size} seed ${seed}`).toBe(true);
        }
      }
    }
  });

  it('composes the same scenes for the same arguments and seed, as plain JSON', () => {
    const args = productShot.input.parse({ ...minimal, variants: 2, size: '16:9' });
    const scenes = productShot.compose(args, 5);
    expect(productShot.compose(args, 5)).toEqual(scenes);
    expect(JSON.parse(JSON.stringify(scenes))).toEqual(scenes);
    expect(scenes[0]).toMatchObject({ width: 1920, height: 1080, target: { width: 1920, height: 1080 } });
  });
});

describe('social_card input', () => {
  it('fills every default so normalised arguments are complete', () => {
    expect(socialCard.input.parse({ headline: 'Hello' })).toEqual({
      headline: 'Hello',
      body: '',
      channel: 'square',
      brand_kit: DEFAULT_BRAND_KIT,
    });
  });

  it("shares a frozen default brand kit, so one run cannot change another's", () => {
    const a = socialCard.input.parse({ headline: 'A' });
    expect(() => {
      a.brand_kit.palette[0]!.hex = '#000000';
    }).toThrow(TypeError);
    expect(socialCard.input.parse({ headline: 'B' }).brand_kit.palette[0]!.hex).toBe('#1F3A5F');
    expect(DEFAULT_BRAND_KIT.palette[0]!.hex).toBe('#1F3A5F');
  });

  it('rejects an unknown channel and an empty headline', () => {
    expect(rejection(socialCard.input, { headline: 'Hi', channel: 'banner' })).toMatch(/^channel: /);
    expect(rejection(socialCard.input, { headline: '   ' })).toMatch(/^headline: /);
  });

  it('costs 2 credits and renders at the channel size', () => {
    for (const [channel, w, h] of [
      ['square', 1080, 1080],
      ['landscape', 1200, 628],
      ['story', 1080, 1920],
    ] as const) {
      const args = socialCard.input.parse({ headline: 'Hi', channel });
      expect(socialCard.cost(args)).toBe(2);
      expect(socialCard.compose(args, 1)).toMatchObject([{ width: w, height: h, target: { width: w, height: h } }]);
    }
  });
});

describe('composers with a caller brand kit', () => {
  const dark: BrandKit = {
    name: 'Nightjar',
    palette: [
      { hex: '#111827', role: 'background' },
      { hex: '#F9FAFB', role: 'text' },
      { hex: '#6366F1', role: 'primary' },
      { hex: '#F59E0B', role: 'accent' },
    ],
    logo_text: 'NIGHTJAR',
    tone_words: [],
    banned_phrases: [],
  };

  it('uses the kit and still passes its own rubric', () => {
    const scenes = [
      ...productShot.compose(
        productShot.input.parse({
          brief: 'Cold brew in a can.',
          product_name: 'Night Shift',
          brand_kit: dark,
          variants: 2,
          style: 'bold',
        }),
        8,
      ),
      ...socialCard.compose(
        socialCard.input.parse({ headline: 'Open late', body: 'Every night.', brand_kit: dark }),
        2,
      ),
    ];
    for (const scene of scenes) {
      const ev = evaluate(renderScene(scene), dark, scene.target, scene);
      expect(ev.checks.filter((c) => !c.passed)).toEqual([]);
      expect(scene.elements.some((e) => e.kind === 'logo' && e.text === 'NIGHTJAR')).toBe(true);
    }
  });
});
