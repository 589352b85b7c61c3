// The checks on the copy as set: no banned phrase in any text or the logo, and every piece of copy the
// request asked for set whole, readable and inside the canvas.
import type { BrandKit } from '../brand.js';
import { distance, parseHex } from '../color.js';
import { readableSize, splitsAWord } from '../compose/layout.js';
import { logoElements, textElements, type Box, type Scene } from '../compose/scene.js';
import type { Pixels } from './index.js';
import { fail, pass, type Outcome } from './outcome.js';
import { clip, eachPixel, type Rect } from './region.js';

export function checkBannedPhrases(scene: Scene, brand: BrandKit): Outcome {
  // Curly quotes and line breaks must not hide a phrase.
  const normal = (s: string) => s.replace(/[‘’]/g, "'").replace(/[“”]/g, '"').replace(/\s+/g, ' ').toLowerCase();
  const texts = [
    ...textElements(scene).map((t) => ({ name: t.id, text: normal(t.lines.join(' ')) })),
    ...logoElements(scene).map((l) => ({ name: 'logo', text: normal(l.text) })),
  ];
  const hits = brand.banned_phrases.flatMap((phrase) =>
    texts.filter((t) => t.text.includes(normal(phrase))).map((t) => ({ phrase, name: t.name })),
  );
  if (hits.length === 0) {
    return pass(`none of ${brand.banned_phrases.length} banned phrases appear in ${texts.length} text elements`);
  }
  return fail(
    hits.map((h) => `"${h.phrase}" in ${h.name}`).join('; '),
    hits.map((h) => `Rewrite ${h.name} without "${h.phrase}"`).join('; ') + '.',
  );
}

/**
 * Fit: every piece of copy the request asked for is set whole (not cut with an ellipsis, not left out,
 * no word broken across lines), at a size that reads, and inside the canvas. Text too long for its box
 * fails here, whoever composed it.
 */
export function checkTextFit(scene: Scene, image: Pixels | null): Outcome {
  const texts = textElements(scene);
  const short = Math.min(scene.width, scene.height);
  const readable = readableSize(short);
  const problems: string[] = [];
  const fixes: string[] = [];
  for (const { id, text } of scene.copy ?? []) {
    const words = text.split(/\s+/).filter(Boolean);
    const set = texts.find((t) => t.id === id);
    if (set === undefined) {
      problems.push(`${id} left out: no room for its ${words.length} words`);
      fixes.push(`Shorten the copy above the ${id}, or give the ${id} fewer words`);
      continue;
    }
    const shown = set.lines.join(' / ');
    if (shown.endsWith('…')) {
      // Whole words shown, counted by their letters: a word broken across lines still counts once.
      let letters = set.lines.join('').replace(/[\s…]/g, '').length;
      let kept = 0;
      for (const word of words) {
        letters -= word.length;
        if (letters < 0) break;
        kept++;
      }
      problems.push(`${id} cut after ${kept} of its ${words.length} words ("${shown}")`);
      fixes.push(`Shorten the ${id} to about ${Math.max(1, kept)} words, or choose a size with more room`);
    } else if (splitsAWord(text, set.lines)) {
      const broken = words.find((word) => !set.lines.some((line) => line.split(' ').includes(word))) ?? words[0]!;
      problems.push(`${id} breaks "${broken}" across lines`);
      fixes.push(`Use a shorter ${id}, or shorter words in it`);
    }
  }
  for (const t of texts) {
    if (t.fontSize < readable) {
      problems.push(
        `${t.id} set at ${t.fontSize}px, under the ${readable}px that reads at ${scene.width}×${scene.height}`,
      );
      fixes.push(`Shorten the ${t.id} so it can be set larger`);
    }
    const over = {
      left: -t.box.x,
      top: -t.box.y,
      right: t.box.x + t.box.w - scene.width,
      bottom: t.box.y + t.box.h - scene.height,
    };
    for (const [side, px] of Object.entries(over)) {
      if (px <= 0) continue;
      const inked =
        image === null
          ? ''
          : inkAtEdge(image, t.box, t.color, side as keyof typeof over)
            ? ': its letters are cut off'
            : '';
      problems.push(`${t.id} runs ${Math.ceil(px)}px past the ${side} edge${inked}`);
      fixes.push(`Move the ${t.id} inside the canvas, or shorten it`);
    }
  }
  const checked = `${texts.length} text element(s)` + (scene.copy ? `, ${scene.copy.length} piece(s) of copy` : '');
  if (problems.length === 0) {
    const smallest = texts.length > 0 ? Math.min(...texts.map((t) => t.fontSize)) : null;
    return pass(
      `${checked} set whole inside the canvas` +
        (smallest === null ? '' : `; smallest type ${smallest}px (needs ≥ ${readable}px)`),
    );
  }
  return fail(problems.join('; '), `${fixes.join('; ')}.`);
}

/** Whether pixels of the text's colour touch the image edge along the text's span: the edge cuts it. */
function inkAtEdge(image: Pixels, box: Box, color: string, side: 'left' | 'top' | 'right' | 'bottom'): boolean {
  const span = clip(image, box);
  const strip: Rect =
    side === 'left'
      ? { ...span, x0: 0, x1: Math.min(2, image.width) }
      : side === 'right'
        ? { ...span, x0: Math.max(0, image.width - 2), x1: image.width }
        : side === 'top'
          ? { ...span, y0: 0, y1: Math.min(2, image.height) }
          : { ...span, y0: Math.max(0, image.height - 2), y1: image.height };
  const ink = parseHex(color);
  let n = 0;
  eachPixel(image, strip, (c) => {
    if (distance(c, ink) <= 40) n++;
  });
  return n >= 2;
}
