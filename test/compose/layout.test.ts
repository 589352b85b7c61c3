import { describe, expect, it } from 'vitest';
import { DEFAULT_BRAND_KIT, type BrandKit } from '../../src/brand.js';
import { contrastRatio, parseHex } from '../../src/color.js';
import { renderScene } from '../../src/providers/builtin.js';
import { textWidth } from '../../src/compose/font.js';
import { brandRoles, fitText, readableOn, wrap } from '../../src/compose/layout.js';
import { productKindFor } from '../../src/compose/products.js';
import type { Box, Scene } from '../../src/compose/scene.js';
import productShot from '../../tools/product_shot.js';
import socialCard from '../../tools/social_card.js';

const inside = (inner: Box, outer: Box) =>
  inner.x >= outer.x &&
  inner.y >= outer.y &&
  inner.x + inner.w <= outer.x + outer.w &&
  inner.y + inner.h <= outer.y + outer.h;

describe('font metrics', () => {
  it('measures bold wider than regular and longer text wider than shorter', () => {
    expect(textWidth('Hello', 40, 700)).toBeGreaterThan(textWidth('Hello', 40, 400));
    expect(textWidth('Hello world', 40, 400)).toBeGreaterThan(textWidth('Hello', 40, 400));
    expect(textWidth('Hello', 80, 400)).toBeCloseTo(2 * textWidth('Hello', 40, 400));
  });
});

describe('wrap and fitText', () => {
  it('wraps so every line fits the width, and splits a word longer than a line', () => {
    const lines = wrap('Supercalifragilisticexpialidocious is a very long word indeed', 40, 700, 300);
    expect(lines.length).toBeGreaterThan(2);
    for (const line of lines) expect(textWidth(line, 40, 700)).toBeLessThanOrEqual(300);
    expect(lines.join('').replace(/\s/g, '')).toBe('Supercalifragilisticexpialidociousisaverylongwordindeed');
  });

  it('shrinks text to fit its region and keeps the box inside the region', () => {
    const region = { x: 50, y: 60, w: 400, h: 200 };
    const t = fitText({
      id: 'headline',
      text: 'A headline that is rather long for such a small region',
      region,
      weight: 700,
      maxSize: 120,
      minSize: 20,
      maxLines: 3,
      color: '#000000',
    });
    expect(t.fontSize).toBeLessThan(120);
    expect(t.lines.length).toBeLessThanOrEqual(3);
    expect(inside(t.box, region)).toBe(true);
  });

  it('cuts overflow with an ellipsis once the minimum size cannot hold it', () => {
    const t = fitText({
      id: 'body',
      text: 'word '.repeat(200),
      region: { x: 0, y: 0, w: 300, h: 100 },
      weight: 400,
      maxSize: 30,
      minSize: 20,
      maxLines: 6,
      color: '#000000',
    });
    expect(t.fontSize).toBe(20);
    expect(t.lines.at(-1)).toMatch(/…$/);
    expect(t.box.h).toBeLessThanOrEqual(100);
  });
});

describe('brand colours', () => {
  it('derives missing roles and always finds a readable text colour', () => {
    const kit: BrandKit = { ...DEFAULT_BRAND_KIT, palette: [{ hex: '#FFD400', role: 'primary' }] };
    const roles = brandRoles(kit);
    expect(roles.background).toBe('#FFD400');
    expect(contrastRatio(parseHex(roles.text), parseHex(roles.background))).toBeGreaterThanOrEqual(4.5);
    expect(readableOn('#1F3A5F', DEFAULT_BRAND_KIT)).toBe('#F7F4EE');
  });
});

describe('productKindFor', () => {
  it('prefers the container a brief names over what it holds', () => {
    expect(productKindFor('Our new cold brew coffee in a can')).toBe('can');
    expect(productKindFor('A latte for the morning')).toBe('mug');
    expect(productKindFor('A serum you can trust')).toBe('bottle');
    expect(productKindFor('A summer launch')).toBeUndefined();
  });
});

/** Every pixel that is not the white background must lie inside a declared text or logo box. */
function inkOutsideBoxes(scene: Scene): number {
  const textOnly: Scene = {
    ...scene,
    background: '#FFFFFF',
    elements: scene.elements
      .filter((e) => e.kind === 'text' || e.kind === 'logo')
      .map((e) => (e.kind === 'text' ? { ...e, color: '#000000' } : { ...e, color: '#000000', markColor: '#000000' })),
  };
  const boxes = textOnly.elements.map((e) => (e as { box: Box }).box);
  const { rgba, width, height } = renderScene(textOnly);
  let outside = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (rgba[4 * (y * width + x)]! === 255) continue;
      if (!boxes.some((b) => x >= Math.floor(b.x) && x < b.x + b.w && y >= Math.floor(b.y) && y < b.y + b.h)) outside++;
    }
  }
  return outside;
}

describe('declared text boxes', () => {
  const awkward = 'Ýoung Ångström jumps — quizzical gypsy fjord “quotes” & <tags>';

  it('hold every glyph the renderer draws on a social card', () => {
    for (const channel of ['square', 'landscape', 'story'] as const) {
      const args = socialCard.input.parse({ headline: awkward, body: `${awkward}. ${awkward}.`, channel });
      for (const scene of socialCard.compose(args, 11)) expect(inkOutsideBoxes(scene)).toBe(0);
    }
  });

  it('hold every glyph the renderer draws on a product shot', () => {
    for (const size of ['1:1', '16:9', '9:16'] as const) {
      const args = productShot.input.parse({ brief: awkward, product_name: 'WWW Jigsaw Ág', size, style: 'minimal' });
      for (const scene of productShot.compose(args, 3)) expect(inkOutsideBoxes(scene)).toBe(0);
    }
  });
});
