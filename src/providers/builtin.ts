// The built-in provider: renders a scene offline with resvg and the shipped font. No system fonts and no
// network, so the same scene gives byte-identical PNGs on every machine.
import { Resvg } from '@resvg/resvg-js';
import { FONT_FAMILY, FONT_FILES } from './font.js';
import type { Scene } from './scene.js';
import { sceneToSvg } from './svg.js';

/**
 * Part of every asset's identity: bump it whenever composers, the SVG writer, the font or the resvg
 * version change what bytes a request produces (the golden tests fail when that happens).
 */
export const GENERATOR_VERSION = 'builtin-1';

export interface RenderedImage {
  png: Buffer;
  width: number;
  height: number;
  /** Straight (not premultiplied) RGBA, row by row, 4 bytes a pixel. */
  rgba: Uint8Array;
}

export function renderScene(scene: Scene): RenderedImage {
  const resvg = new Resvg(sceneToSvg(scene), {
    font: { loadSystemFonts: false, fontFiles: Object.values(FONT_FILES), defaultFontFamily: FONT_FAMILY },
    fitTo: { mode: 'original' },
    logLevel: 'off',
  });
  const image = resvg.render();
  return { png: image.asPng(), width: image.width, height: image.height, rgba: image.pixels };
}
