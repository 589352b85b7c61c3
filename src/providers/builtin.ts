// The built-in provider: renders a scene offline with resvg and the shipped font. No system fonts and no
// network, so the same scene gives byte-identical PNGs on every machine; it needs no idempotency key
// of its own, and rendering again after a crash costs nothing but time.
import { Resvg } from '@resvg/resvg-js';
import { FONT_FAMILY, FONT_FILES } from '../compose/font.js';
import type { Scene } from '../compose/scene.js';
import type { Provider } from './index.js';
import { sceneToSvg } from './svg.js';

/**
 * Part of every asset's identity: bump it whenever composers, the SVG writer, the font or the resvg
 * version change what bytes a request produces (the golden tests fail when that happens).
 */
export const GENERATOR_VERSION = 'builtin-2';

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

/** The built-in provider; `render` runs renderScene, on the engine's threads. */
export function createBuiltinProvider(render: (scene: Scene) => Promise<RenderedImage>): Provider {
  return {
    kind: 'image',
    id: 'builtin',
    model: null,
    version: GENERATOR_VERSION,
    accepts: 'scene',
    billsPerCall: false,
    async generate(request) {
      if (request.kind !== 'scene') throw new Error('the built-in renderer draws scenes, not prompts');
      const image = await render(request.scene);
      // From a thread the PNG arrives as a plain Uint8Array: view it as a Buffer, no copy.
      const bytes = Buffer.from(image.png.buffer, image.png.byteOffset, image.png.byteLength);
      return { bytes, mime: 'image/png', width: image.width, height: image.height, pixels: image };
    },
    close: async () => undefined,
  };
}
