import { describe, expect, it } from 'vitest';
import { DEFAULT_BRAND_KIT, type BrandKit } from '../../src/brand.js';
import { fitText } from '../../src/compose/layout.js';
import { renderScene } from '../../src/providers/builtin.js';
import type { Scene, SizeTarget, TextElement } from '../../src/compose/scene.js';
import { evaluate, type Evaluation } from '../../src/rubric/index.js';
import productShot from '../../tools/product_shot.js';
import socialCard from '../../tools/social_card.js';

const check = (ev: Evaluation, id: string) => ev.checks.find((c) => c.id === id);
const failed = (ev: Evaluation) => ev.checks.filter((c) => !c.passed).map((c) => c.id);
const judge = (scene: Scene, brand: BrandKit = DEFAULT_BRAND_KIT) =>
  evaluate(renderScene(scene), brand, scene.target, scene);
const clone = (scene: Scene): Scene => structuredClone(scene);

/** A light social card: text straight on the brand background colour. */
function card(headline = 'Spring collection: light layers for longer days'): Scene {
  const args = socialCard.input.parse({ headline, body: 'Breathable linen, made to last.' });
  // Seed 1 composes the "block" look: dark text on the light background.
  const scene = socialCard.compose(args, 1)[0]!;
  expect(scene.background).toBe('#F7F4EE');
  return scene;
}
const headlineOf = (scene: Scene) =>
  scene.elements.find((e): e is TextElement => e.kind === 'text' && e.id === 'headline')!;

describe('evaluate on the built-in tools with the default brand kit', () => {
  it('passes every check for every product_shot style and social_card channel', () => {
    const scenes = [
      ...(['studio', 'lifestyle', 'minimal', 'bold'] as const).flatMap((style) =>
        productShot.compose(
          productShot.input.parse({
            brief: 'A ceramic mug for slow mornings.',
            product_name: 'Dawn Mug',
            style,
            variants: 2,
          }),
          31,
        ),
      ),
      ...(['square', 'landscape', 'story'] as const).flatMap((channel) =>
        [1, 2, 3].flatMap((seed) =>
          socialCard.compose(
            socialCard.input.parse({ headline: 'Free repairs for life', body: 'On every piece.', channel }),
            seed,
          ),
        ),
      ),
    ];
    for (const scene of scenes) {
      const ev = judge(scene);
      expect(failed(ev)).toEqual([]);
      expect(ev).toMatchObject({ score: 1, tested: 7, passed: 7, skipped: [] });
      for (const c of ev.checks) expect(c.fix).toBeNull();
    }
  });

  it('reports measured numbers as evidence', () => {
    const ev = judge(card());
    expect(check(ev, 'text_contrast')!.evidence).toMatch(/headline \d+\.\d\d:1 \(#16202C on #F7F4EE, needs 3:1\)/);
    expect(check(ev, 'palette_coverage')!.evidence).toMatch(
      /^\d+\.\d% of the image within ΔE 12 of a brand colour \(needs ≥ 85\.0%, and every colour over 3\.0%\); dominant colours #F7F4EE \d+\.\d% \(ΔE \d\.\d to background #F7F4EE\), #1F3A5F/,
    );
    expect(check(ev, 'size')!.evidence).toBe('1080×1080 rendered; channel "square" asks for 1080×1080');
    expect(check(ev, 'logo_present')!.evidence).toMatch(
      /^logo "LUMEN" \d+×\d+px: \d\.\d% of the short side tall \(needs ≥ 2\.8%\), \d\.\d% of the image \(at most 6\.0%\), \d+\.\d% of its box stands out from #F7F4EE$/,
    );
    expect(check(ev, 'text_fit')!.evidence).toMatch(
      /^2 text element\(s\), 2 piece\(s\) of copy set whole inside the canvas; smallest type \d+px \(needs ≥ 24px\)$/,
    );
  });
});

describe('evaluate fails exactly the check a defect breaks', () => {
  it('fails text_contrast for a headline in a brand colour too light for its background', () => {
    const scene = clone(card());
    headlineOf(scene).color = '#7FB7A4';
    const ev = judge(scene);
    expect(failed(ev)).toEqual(['text_contrast']);
    const c = check(ev, 'text_contrast')!;
    expect(c.evidence).toMatch(/^low contrast: headline 2\.\d\d:1 \(#7FB7A4 on #F7F4EE, needs 3:1\)$/);
    expect(c.fix).toContain('Set headline in #1F3A5F');
  });

  it('fails text_contrast and palette_coverage for a headline in a pale colour outside the kit', () => {
    const scene = clone(card());
    headlineOf(scene).color = '#E6E2DA';
    const ev = judge(scene);
    expect(failed(ev)).toEqual(['text_contrast', 'palette_coverage']);
    expect(check(ev, 'palette_coverage')!.evidence).toMatch(
      /headline is set in #E6E2DA, not a brand colour \(nearest #F7F4EE, ΔE \d+\.\d\)$/,
    );
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
    expect(check(ev, 'size')).toMatchObject({
      evidence:
        '1080×1080 rendered, but channel "landscape" asks for 1200×628: aspect 1.000 vs 1.911 (47.7% off, tolerance 3.0%), ' +
        'scale 1.24 (tolerance 0.90–1.10)',
      fix: 'Draw it at the aspect ratio asked for (1200×628), or crop it to that ratio; a different ratio changes the framing.',
    });
  });

  it('passes size within the stated tolerance: 1024×1024 for 1080×1080, 1792×1024 for 1920×1080; not 1536×1024 for 4:3', () => {
    const image = (width: number, height: number) => ({
      width,
      height,
      rgba: new Uint8Array(width * height * 4).fill(255),
    });
    const size = (w: number, h: number, target: SizeTarget) =>
      check(evaluate(image(w, h), DEFAULT_BRAND_KIT, target, null), 'size')!;
    const square = { width: 1080, height: 1080, label: 'size "1:1"' };
    expect(size(1024, 1024, square)).toMatchObject({
      passed: true,
      evidence:
        '1024×1024 rendered; size "1:1" asks for 1080×1080: aspect 1.000 vs 1.000 (0.0% off, tolerance 3.0%), scale 0.95 (tolerance 0.90–1.10)',
    });
    expect(size(1792, 1024, { width: 1920, height: 1080, label: 'size "16:9"' }).passed).toBe(true);
    expect(size(1536, 1024, { width: 1440, height: 1080, label: 'size "4:3"' }).passed).toBe(false);
    expect(size(512, 512, square)).toMatchObject({
      passed: false,
      fix: 'Draw it at 1080×1080, or within 10.0% of it.',
    });
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
    for (const e of invisible.elements)
      if (e.kind === 'logo') Object.assign(e, { color: '#F7F4EE', markColor: '#F7F4EE' });
    const ev = judge(invisible);
    expect(failed(ev)).toEqual(['logo_present']);
    expect(check(ev, 'logo_present')!.evidence).toMatch(
      /0\.0% of its box stands out from #F7F4EE: not visible \(needs 3\.0%\)$/,
    );
  });

  it('fails logo_present for a logo too small to read', () => {
    const tiny = clone(card());
    for (const e of tiny.elements) {
      if (e.kind !== 'logo') continue;
      // Redrawn at a third of its size, in place.
      const k = 1 / 3;
      Object.assign(e, {
        fontSize: e.fontSize * k,
        markR: e.markR * k,
        markCx: e.box.x + (e.markCx - e.box.x) * k,
        markCy: e.box.y + (e.markCy - e.box.y) * k,
        textX: e.box.x + (e.textX - e.box.x) * k,
        baseline: e.box.y + (e.baseline - e.box.y) * k,
        box: { ...e.box, w: Math.ceil(e.box.w * k), h: Math.ceil(e.box.h * k) },
      });
    }
    const ev = judge(tiny);
    expect(failed(ev)).toEqual(['logo_present']);
    expect(check(ev, 'logo_present')).toMatchObject({
      evidence: expect.stringMatching(
        /^logo "LUMEN" \d+×18px: 1\.7% of the short side tall \(needs ≥ 2\.8%\).*: too small to read$/,
      ),
      fix: 'Draw the logo at least 31px tall; a shorter logo_text leaves it more room.',
    });
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
    // The cream background passes as near-white (black and white belong to every palette); the navy does not.
    expect(check(ev, 'palette_coverage')!.evidence).toMatch(
      /^\d+\.\d% of the image within ΔE 12 of a brand colour .*; the largest off-palette colour is #1F3A5F \(\d+\.\d%, ΔE \d+\.\d to #[0-9A-F]{6}\); headline is set in #16202C, not a brand colour/,
    );
    expect(check(ev, 'palette_coverage')!.fix).toMatch(
      /^Replace the #1F3A5F areas with brand colours \(#FF00AA, #00FF00\); /,
    );
  });

  it('fails palette_coverage for the same picture with its colours turned: dominant colours, not the layout, are judged', () => {
    const scene = card();
    const image = renderScene(scene);
    // Swap the red and blue channels: same shapes, same text, other colours.
    for (let i = 0; i < image.rgba.length; i += 4)
      [image.rgba[i], image.rgba[i + 2]] = [image.rgba[i + 2]!, image.rgba[i]!];
    const ev = evaluate(image, DEFAULT_BRAND_KIT, scene.target, scene);
    expect(failed(ev)).toContain('palette_coverage');
    expect(check(ev, 'palette_coverage')!.evidence).toMatch(
      /dominant colours #EEF4F7 \d+\.\d% \(ΔE \d\.\d to neutral #FFFFFF\), #5F3A1F \d+\.\d% \(ΔE 39\.0 to neutral #000000\)/,
    );
  });

  it('fails text_fit for copy that is cut, left out, broken mid-word or pushed off the canvas', () => {
    // Forty words for a box that holds two lines of the headline's size: the composer cuts them.
    const long = clone(card());
    const words = 'word '.repeat(40).trim();
    const h0 = headlineOf(long);
    Object.assign(
      h0,
      fitText({
        id: 'headline',
        text: words,
        region: h0.box,
        weight: 700,
        maxSize: h0.fontSize,
        minSize: h0.fontSize,
        maxLines: 2,
        color: h0.color,
      }),
    );
    long.copy = [{ id: 'headline', text: words }];
    const cut = judge(long);
    expect(failed(cut)).toEqual(['text_fit']);
    expect(check(cut, 'text_fit')!.evidence).toMatch(/^headline cut after \d+ of its 40 words \("word( word)*…"\)$/);

    const dropped = clone(card());
    dropped.elements = dropped.elements.filter((e) => !(e.kind === 'text' && e.id === 'body'));
    expect(check(judge(dropped), 'text_fit')!.evidence).toBe('body left out: no room for its 5 words');

    const broken = judge(card('Pneumonoultramicroscopicsilicovolcanoconiosis-proof linen'));
    expect(check(broken, 'text_fit')!.evidence).toMatch(
      /^headline breaks "Pneumonoultramicroscopicsilicovolcanoconiosis-proof" across lines/,
    );

    const pushed = clone(card());
    const h = headlineOf(pushed);
    h.x += 700;
    h.box.x += 700;
    const ev = judge(pushed);
    expect(failed(ev)).toEqual(['safe_margin', 'text_fit']);
    expect(check(ev, 'text_fit')!.evidence).toMatch(
      /^headline runs \d+px past the right edge: its letters are cut off$/,
    );
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
    expect(ev).toMatchObject({ passed: 5, tested: 7 });
    expect(ev.score).toBeCloseTo(5 / 7, 4);
  });

  it('scores an image without its scene on the pixel checks, and says why the others were skipped', () => {
    const scene = twoDefects();
    const ev = evaluate(renderScene(scene), DEFAULT_BRAND_KIT, scene.target, null);
    expect(ev.checks.map((c) => c.id)).toEqual(['size', 'palette_coverage']);
    expect(ev.skipped.map((s) => s.id)).toEqual([
      'safe_margin',
      'logo_present',
      'banned_phrases',
      'text_contrast',
      'text_fit',
    ]);
    expect(ev.skipped.every((s) => /prompt-based provider/.test(s.reason))).toBe(true);
    expect(ev.tested).toBe(2);
  });

  it('skips a check weighted 0: not run, not counted', () => {
    const brand = { ...DEFAULT_BRAND_KIT, rubric_weights: { size: 0 } };
    const ev = judge(twoDefects(), brand);
    expect(ev.skipped).toEqual([{ id: 'size', reason: 'weighted 0 in the brand kit' }]);
    expect(ev.checks.map((c) => c.id)).not.toContain('size');
    expect(ev).toMatchObject({ passed: 5, tested: 6 });
    expect(ev.score).toBeCloseTo(5 / 6, 4);
  });

  it('lets a lighter weight count a failure for less', () => {
    const brand = { ...DEFAULT_BRAND_KIT, rubric_weights: { size: 0.5, logo_present: 0.5 } };
    const ev = judge(twoDefects(), brand);
    expect(ev.score).toBeCloseTo(5 / 6, 4);
    expect(check(ev, 'size')!.weight).toBe(0.5);
  });
});

describe("the built-in renderer's own output is not 1.0 by construction", () => {
  /** Every colour strong and about equally light: magenta, red, green, orange, cyan. */
  const clashing: BrandKit = {
    name: 'Clash',
    palette: [
      { hex: '#E4002B', role: 'primary' },
      { hex: '#00A651', role: 'secondary' },
      { hex: '#FF6F00', role: 'accent' },
      { hex: '#FF00A8', role: 'background' },
      { hex: '#00B2FF', role: 'text' },
    ],
    logo_text: 'CLASH',
    tone_words: [],
    banned_phrases: [],
  };

  it('scores a brand kit whose colours clash lower: its edges vibrate', () => {
    const scenes = [
      ...socialCard.compose(
        socialCard.input.parse({ headline: 'Summer is loud', body: 'So are we.', brand_kit: clashing }),
        1,
      ),
      ...productShot.compose(
        productShot.input.parse({
          brief: 'Cold brew in a can.',
          product_name: 'Fizz',
          brand_kit: clashing,
          variants: 2,
        }),
        1,
      ),
    ];
    for (const scene of scenes) {
      const ev = judge(scene, clashing);
      expect(ev.score).toBeLessThan(1);
      expect(failed(ev)).toEqual(['palette_coverage']);
      expect(check(ev, 'palette_coverage')!.evidence).toMatch(
        /#[0-9A-F]{6} meets #[0-9A-F]{6} along \d+\.\d% of the image: both strong, equally light .* so the edge vibrates/,
      );
    }
  });

  it('scores copy too long for its box lower: cut, or broken mid-word', () => {
    const args = productShot.input.parse({
      brief: 'A flask.',
      product_name: 'Hyperconductive Thermoregulating Ultralightweight Expedition Flask',
      tagline: 'Keeps coffee hot for a day and water ice cold for two, on every trail, in every season.',
      variants: 4,
    });
    for (const scene of productShot.compose(args, 1)) {
      const ev = judge(scene);
      expect(failed(ev)).toEqual(['text_fit']);
      expect(ev.score).toBeCloseTo(6 / 7, 4);
      expect(check(ev, 'text_fit')!.evidence).toMatch(/(headline|body) cut after \d+ of its \d+ words/);
    }
  });
});
