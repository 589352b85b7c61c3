import { describe, expect, it } from 'vitest';
import { DEFAULT_BRAND_KIT, type BrandKit } from '../../src/brand.js';
import { renderScene } from '../../src/providers/builtin.js';
import type { Scene, TextElement } from '../../src/compose/scene.js';
import { evaluate, type Evaluation } from '../../src/rubric/index.js';
import productShot from '../../tools/product_shot.js';
import socialCard from '../../tools/social_card.js';

const check = (ev: Evaluation, id: string) => ev.checks.find((c) => c.id === id);
const failed = (ev: Evaluation) => ev.checks.filter((c) => !c.passed).map((c) => c.id);
const judge = (scene: Scene, brand: BrandKit = DEFAULT_BRAND_KIT) => evaluate(renderScene(scene), brand, scene.target, scene);
const clone = (scene: Scene): Scene => structuredClone(scene);

/** A light social card: text straight on the brand background colour. */
function card(headline = 'Spring collection: light layers for longer days'): Scene {
  const args = socialCard.input.parse({ headline, body: 'Breathable linen, made to last.' });
  // Seed 1 composes the "block" look: dark text on the light background.
  const scene = socialCard.compose(args, 1)[0]!;
  expect(scene.background).toBe('#F7F4EE');
  return scene;
}
const headlineOf = (scene: Scene) => scene.elements.find((e): e is TextElement => e.kind === 'text' && e.id === 'headline')!;

describe('evaluate on the built-in tools with the default brand kit', () => {
  it('passes every check for every product_shot style and social_card channel', () => {
    const scenes = [
      ...(['studio', 'lifestyle', 'minimal', 'bold'] as const).flatMap((style) =>
        productShot.compose(
          productShot.input.parse({ brief: 'A ceramic mug for slow mornings.', product_name: 'Dawn Mug', style, variants: 2 }),
          31,
        ),
      ),
      ...(['square', 'landscape', 'story'] as const).flatMap((channel) =>
        [1, 2, 3].flatMap((seed) =>
          socialCard.compose(socialCard.input.parse({ headline: 'Free repairs for life', body: 'On every piece.', channel }), seed),
        ),
      ),
    ];
    for (const scene of scenes) {
      const ev = judge(scene);
      expect(failed(ev)).toEqual([]);
      expect(ev).toMatchObject({ score: 1, tested: 6, passed: 6, skipped: [] });
      for (const c of ev.checks) expect(c.fix).toBeNull();
    }
  });

  it('reports measured numbers as evidence', () => {
    const ev = judge(card());
    expect(check(ev, 'text_contrast')!.evidence).toMatch(/headline \d+\.\d\d:1 \(#16202C on #F7F4EE, needs 3:1\)/);
    expect(check(ev, 'palette_coverage')!.evidence).toMatch(/^\d+\.\d% of pixels within 48 of a brand colour/);
    expect(check(ev, 'size')!.evidence).toBe('1080×1080 rendered; channel "square" expects 1080×1080');
    expect(check(ev, 'logo_present')!.evidence).toMatch(/^logo "LUMEN" drawn: \d+\.\d% of its \d+×\d+px box stands out/);
  });
});

describe('evaluate fails exactly the check a defect breaks', () => {
  it('fails text_contrast for a headline barely darker than its background', () => {
    const scene = clone(card());
    headlineOf(scene).color = '#E6E2DA';
    const ev = judge(scene);
    expect(failed(ev)).toEqual(['text_contrast']);
    const c = check(ev, 'text_contrast')!;
    expect(c.evidence).toMatch(/^low contrast: headline 1\.\d\d:1 \(#E6E2DA on #F7F4EE, needs 3:1\)$/);
    expect(c.fix).toContain('Set headline in #1F3A5F');
  });

  it('judges contrast by the rendered pixels, not by the colour the scene claims', () => {
    const scene = clone(card());
    // A panel the colour of the text slipped in behind the headline: the text is still "dark", but unreadable.
    const h = headlineOf(scene);
    scene.elements.splice(scene.elements.indexOf(h), 0, { kind: 'rect', ...h.box, fill: '#1F2A36' });
    const ev = judge(scene);
    expect(failed(ev)).toEqual(['text_contrast']);
    expect(check(ev, 'text_contrast')!.evidence).toMatch(/headline 1\.\d\d:1 \(#16202C on #1F2/);
  });

  it('fails banned_phrases for a banned phrase in the headline, whatever its case or line breaks', () => {
    const ev = judge(card('Simply the Best in the   World linen'));
    expect(failed(ev)).toEqual(['banned_phrases']);
    expect(check(ev, 'banned_phrases')).toMatchObject({
      evidence: '"best in the world" in headline',
      fix: 'Rewrite headline without "best in the world".',
    });
  });

  it('fails safe_margin for a headline moved into the margin', () => {
    const scene = clone(card());
    const h = headlineOf(scene);
    h.x -= 50;
    h.box.x -= 50;
    const ev = judge(scene);
    expect(failed(ev)).toEqual(['safe_margin']);
    expect(check(ev, 'safe_margin')).toMatchObject({
      evidence: 'headline is 15px from the left edge (safe margin 65px)',
      fix: 'Move headline 50px further from the left edge, or make it smaller.',
    });
  });

  it('fails size when the image is not the size the channel expects', () => {
    const scene = clone(card());
    scene.target = { width: 1200, height: 628, label: 'channel "landscape"' };
    const ev = judge(scene);
    expect(failed(ev)).toEqual(['size']);
    expect(check(ev, 'size')!.evidence).toBe('1080×1080 rendered, but channel "landscape" expects 1200×628');
  });

  it('fails logo_present when the logo is missing, misspelt or invisible', () => {
    const missing = clone(card());
    missing.elements = missing.elements.filter((e) => e.kind !== 'logo');
    expect(failed(judge(missing))).toEqual(['logo_present']);
    expect(check(judge(missing), 'logo_present')!.evidence).toBe('no logo in the image');

    const misspelt = clone(card());
    for (const e of misspelt.elements) if (e.kind === 'logo') e.text = 'LUMIN';
    expect(failed(judge(misspelt))).toEqual(['logo_present']);

    const invisible = clone(card());
    for (const e of invisible.elements) if (e.kind === 'logo') Object.assign(e, { color: '#F7F4EE', markColor: '#F7F4EE' });
    const ev = judge(invisible);
    expect(failed(ev)).toEqual(['logo_present']);
    expect(check(ev, 'logo_present')!.evidence).toMatch(/^logo "LUMEN" is not visible: only 0\.0% of its/);
  });

  it('fails palette_coverage when the image is scored against a brand with other colours', () => {
    const other: BrandKit = {
      ...DEFAULT_BRAND_KIT,
      palette: [
        { hex: '#FF00AA', role: 'primary' },
        { hex: '#00FF00', role: 'accent' },
      ],
    };
    const ev = judge(card(), other);
    expect(failed(ev)).toEqual(['palette_coverage']);
    expect(check(ev, 'palette_coverage')!.evidence).toMatch(/the most common off-palette colour is #F7F4EE$/);
    expect(check(ev, 'palette_coverage')!.fix).toBe('Replace the #F7F4EE areas with brand colours (#FF00AA, #00FF00).');
  });
});

describe('scoring', () => {
  const twoDefects = () => {
    const scene = clone(card());
    scene.target = { width: 1200, height: 628, label: 'channel "landscape"' };
    scene.elements = scene.elements.filter((e) => e.kind !== 'logo');
    return scene;
  };

  it('scores passed ÷ tested', () => {
    const ev = judge(twoDefects());
    expect(ev).toMatchObject({ passed: 4, tested: 6 });
    expect(ev.score).toBeCloseTo(4 / 6, 4);
  });

  it('scores an image without its scene on the pixel checks, and says why the others were skipped', () => {
    const scene = twoDefects();
    const ev = evaluate(renderScene(scene), DEFAULT_BRAND_KIT, scene.target, null);
    expect(ev.checks.map((c) => c.id)).toEqual(['size', 'palette_coverage']);
    expect(ev.skipped.map((s) => s.id)).toEqual(['safe_margin', 'logo_present', 'banned_phrases', 'text_contrast']);
    expect(ev.skipped.every((s) => /prompt-based provider/.test(s.reason))).toBe(true);
    expect(ev.tested).toBe(2);
  });

  it('skips a check weighted 0: not run, not counted', () => {
    const brand = { ...DEFAULT_BRAND_KIT, rubric_weights: { size: 0 } };
    const ev = judge(twoDefects(), brand);
    expect(ev.skipped).toEqual([{ id: 'size', reason: 'weighted 0 in the brand kit' }]);
    expect(ev.checks.map((c) => c.id)).not.toContain('size');
    expect(ev).toMatchObject({ passed: 4, tested: 5 });
    expect(ev.score).toBeCloseTo(4 / 5, 4);
  });

  it('lets a lighter weight count a failure for less', () => {
    const brand = { ...DEFAULT_BRAND_KIT, rubric_weights: { size: 0.5, logo_present: 0.5 } };
    const ev = judge(twoDefects(), brand);
    expect(ev.score).toBeCloseTo(4 / 5, 4);
    expect(check(ev, 'size')!.weight).toBe(0.5);
  });
});
