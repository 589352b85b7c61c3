// The rubric against a small labelled set (test/fixtures/rubric, made by make.mjs there): on-brand
// images and off-brand ones (wrong palette, low contrast, text cropped at the edge, no logo, photographs
// a prompt-based provider might draw). The score must separate them: every off-brand image below every
// on-brand one, each failing the check its defect breaks.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { BrandKit } from '../../src/brand.js';
import type { Scene, SizeTarget } from '../../src/compose/scene.js';
import { evaluate, type Evaluation } from '../../src/rubric/index.js';
import { decodePixels } from '../../src/rubric/pixels.js';

interface Fixture {
  file: string;
  label: 'on' | 'off';
  made: string;
  kit: string;
  target: SizeTarget;
  scene: string | null;
  breaks: string[];
}

const dir = join(import.meta.dirname, '../fixtures/rubric');
const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as {
  kits: Record<string, BrandKit>;
  fixtures: Fixture[];
};

function score(f: Fixture): Evaluation {
  const scene = f.scene === null ? null : (JSON.parse(readFileSync(join(dir, f.scene), 'utf8')) as Scene);
  const pixels = decodePixels(readFileSync(join(dir, f.file)), 'image/png');
  return evaluate(pixels, manifest.kits[f.kit]!, f.target, scene);
}

const scored = manifest.fixtures.map((f) => ({ ...f, ev: score(f) }));
const on = scored.filter((f) => f.label === 'on');
const off = scored.filter((f) => f.label === 'off');

describe('rubric calibration on the labelled set', () => {
  it('has on-brand and off-brand images of each kind', () => {
    expect(on.length).toBeGreaterThanOrEqual(6);
    expect(off.length).toBeGreaterThanOrEqual(6);
    expect(off.some((f) => f.scene === null)).toBe(true);
  });

  it('scores every off-brand image below every on-brand one', () => {
    const lowestOn = Math.min(...on.map((f) => f.ev.score));
    const highestOff = Math.max(...off.map((f) => f.ev.score));
    const table = scored.map((f) => `${f.label} ${f.ev.score.toFixed(4)} ${f.file}`).join('\n');
    expect(highestOff, table).toBeLessThan(lowestOn);
  });

  it('passes every check on the on-brand images', () => {
    for (const f of on)
      expect(
        f.ev.checks.filter((c) => !c.passed).map((c) => `${c.id}: ${c.evidence}`),
        f.file,
      ).toEqual([]);
  });

  it('fails, on each off-brand image, the checks its defect breaks', () => {
    for (const f of off) {
      const failed = f.ev.checks.filter((c) => !c.passed).map((c) => c.id);
      for (const id of f.breaks) expect(failed, `${f.file}: ${f.made}`).toContain(id);
    }
  });
});
