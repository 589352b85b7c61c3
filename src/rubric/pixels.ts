// Image bytes from any provider as the pixels the checks read. resvg, which renders the built-in
// images, also decodes PNG and JPEG embedded in an SVG: no other image library is needed.
import { Resvg } from '@resvg/resvg-js';
import type { Pixels } from './index.js';

/** The formats this can read, by their first bytes. */
const DECODABLE: [mime: string, magic: number[]][] = [
  ['image/png', [0x89, 0x50, 0x4e, 0x47]],
  ['image/jpeg', [0xff, 0xd8, 0xff]],
];

export function sniffMime(bytes: Uint8Array): string | null {
  return DECODABLE.find(([, magic]) => magic.every((b, i) => bytes[i] === b))?.[0] ?? null;
}

export class UndecodableImage extends Error {
  constructor(readonly mime: string) {
    super(`cannot read the pixels of ${mime}; PNG and JPEG can be scored`);
    this.name = 'UndecodableImage';
  }
}

export function decodePixels(bytes: Uint8Array, mime: string): Pixels {
  const format = sniffMime(bytes);
  if (format === null) throw new UndecodableImage(mime);
  // An SVG without a size takes its one image's natural size, so the raster is the image, pixel for pixel.
  const svg =
    '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">' +
    `<image xlink:href="data:${format};base64,${Buffer.from(bytes).toString('base64')}"/></svg>`;
  const image = new Resvg(svg, { fitTo: { mode: 'original' }, logLevel: 'off' }).render();
  return { width: image.width, height: image.height, rgba: image.pixels };
}

/** Width and height from a PNG or JPEG header, without decoding; null for anything else. */
export function imageSize(bytes: Uint8Array): { width: number; height: number } | null {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const format = sniffMime(bytes);
  if (format === 'image/png' && view.length >= 24)
    return { width: view.readUInt32BE(16), height: view.readUInt32BE(20) };
  if (format !== 'image/jpeg') return null;
  // Walk the JPEG segments to the frame header (SOF0–SOF15, but not DHT, JPG or DAC).
  for (let at = 2; at + 9 < view.length;) {
    if (view[at] !== 0xff) return null;
    const marker = view[at + 1]!;
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      return { width: view.readUInt16BE(at + 7), height: view.readUInt16BE(at + 5) };
    }
    at += 2 + view.readUInt16BE(at + 2);
  }
  return null;
}
