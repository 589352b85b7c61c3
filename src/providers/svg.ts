// Scene → SVG. Numbers are written with at most two decimals so the SVG text, and so the pixels, depend
// only on the scene.
import { FONT_FAMILY } from '../compose/font.js';
import type { LinearGradient, Paint, Scene, SceneElement, Shape } from '../compose/scene.js';

const num = (n: number): string => {
  const s = n.toFixed(2).replace(/\.?0+$/, '');
  return s === '-0' ? '0' : s;
};

/** Escapes text for XML content and attributes, and drops characters XML 1.0 forbids. */
export function escapeXml(text: string): string {
  const allowed = (cp: number) =>
    cp === 0x9 ||
    cp === 0xa ||
    cp === 0xd ||
    (cp >= 0x20 && cp <= 0xd7ff) ||
    (cp >= 0xe000 && cp <= 0xfffd) ||
    cp >= 0x10000;
  return Array.from(text)
    .filter((ch) => allowed(ch.codePointAt(0)!))
    .join('')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&apos;');
}

const GRADIENT_ENDS: Record<LinearGradient['direction'], string> = {
  horizontal: 'x1="0" y1="0" x2="1" y2="0"',
  vertical: 'x1="0" y1="0" x2="0" y2="1"',
  diagonal: 'x1="0" y1="0" x2="1" y2="1"',
};

export function sceneToSvg(scene: Scene): string {
  const defs: string[] = [];
  const paint = (p: Paint | 'none'): string => {
    if (typeof p === 'string') return escapeXml(p);
    const id = `g${defs.length}`;
    defs.push(
      `<linearGradient id="${id}" ${GRADIENT_ENDS[p.direction]}>` +
        `<stop offset="0" stop-color="${escapeXml(p.from)}"/><stop offset="1" stop-color="${escapeXml(p.to)}"/>` +
        `</linearGradient>`,
    );
    return `url(#${id})`;
  };

  const style = (s: Shape): string =>
    `fill="${paint(s.fill)}"` +
    (s.opacity === undefined ? '' : ` opacity="${num(s.opacity)}"`) +
    (s.stroke ? ` stroke="${escapeXml(s.stroke.color)}" stroke-width="${num(s.stroke.width)}"` : '');

  const draw = (e: SceneElement): string => {
    switch (e.kind) {
      case 'rect':
        return (
          `<rect x="${num(e.x)}" y="${num(e.y)}" width="${num(e.w)}" height="${num(e.h)}"` +
          (e.r ? ` rx="${num(e.r)}"` : '') +
          ` ${style(e)}/>`
        );
      case 'ellipse':
        return `<ellipse cx="${num(e.cx)}" cy="${num(e.cy)}" rx="${num(e.rx)}" ry="${num(e.ry)}" ${style(e)}/>`;
      case 'polygon':
        return `<polygon points="${e.points.map(([x, y]) => `${num(x)},${num(y)}`).join(' ')}" ${style(e)}/>`;
      case 'group':
        return `<g transform="rotate(${num(e.rotate)} ${num(e.cx)} ${num(e.cy)})">${e.shapes.map(draw).join('')}</g>`;
      case 'text':
        return e.lines
          .map(
            (line, i) =>
              `<text x="${num(e.x)}" y="${num(e.baseline + i * e.lineHeight)}" font-size="${num(e.fontSize)}"` +
              ` font-weight="${e.weight}" fill="${escapeXml(e.color)}" text-anchor="${e.anchor}">` +
              `${escapeXml(line)}</text>`,
          )
          .join('');
      case 'logo':
        return (
          `<circle cx="${num(e.markCx)}" cy="${num(e.markCy)}" r="${num(e.markR)}" fill="${escapeXml(e.markColor)}"/>` +
          `<text x="${num(e.textX)}" y="${num(e.baseline)}" font-size="${num(e.fontSize)}" font-weight="700"` +
          ` fill="${escapeXml(e.color)}">${escapeXml(e.text)}</text>`
        );
    }
  };

  // Elements first: drawing them registers the gradients that <defs> must hold.
  const background = `<rect width="${scene.width}" height="${scene.height}" fill="${paint(scene.background)}"/>`;
  const body = scene.elements.map(draw).join('');
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${scene.width}" height="${scene.height}"` +
    ` viewBox="0 0 ${scene.width} ${scene.height}" font-family="${escapeXml(FONT_FAMILY)}">` +
    (defs.length > 0 ? `<defs>${defs.join('')}</defs>` : '') +
    background +
    body +
    `</svg>`
  );
}
