// How the SQLite ledger stores a run's result: zlib-deflated JSON with a preset dictionary. A finished
// run's result is mostly the rubric's evaluation, and one evaluation reads much like the next: primed
// with the words they share, a result shrinks from ~1.2 KB of JSON to ~100–200 bytes.
import { deflateSync, inflateSync } from 'node:zlib';
import type { JsonObject } from '../types.js';

/**
 * Never edit this text: stored results name it by its checksum, and only this exact text inflates
 * them. To improve it, add a second dictionary and pick by the checksum in the zlib header.
 * Fragments that results share, most frequent last (deflate reaches the end of a dictionary cheapest).
 */
const DICTIONARY = Buffer.from(
  [
    '"skipped":["size","safe_margin","logo_present","banned_phrases","text_contrast","palette_coverage"],',
    '"fix":"Use brand colours for large areas",',
    '"fix":"Darken the text or lighten its background",',
    '"fix":"Move the text and logo inside the safe margin",',
    '"fix":"Remove the banned phrase from the copy",',
    '"fix":"Render at the size the channel expects",',
    '"fix":"Draw the logo larger or in a colour that stands out",',
    '"generator":{"provider":"openai","version":"',
    '"generator":{"provider":"builtin","version":"builtin-1"},',
    '"mime":"image/jpeg","mime":"image/webp",',
    'rendered; size "1:1" expects 1080×1080',
    ' box stands out from #F7F4EE',
    'none of 4 banned phrases appear in 3 text elements',
    'of pixels within 48 of a brand colour (needs ≥ 60.0%)',
    ':1 (#16202C on #F7F4EE, needs 3:1); body ',
    ':1 (#16202C on #F7F4EE, needs 4.5:1)',
    'all 3 text and logo boxes keep ≥ 65px from the edges (closest: headline, 65px)',
    'logo "LUMEN" drawn: ',
    '"evidence":"contrast headline ',
    '{"id":"size","weight":1,"passed":true,"evidence":"',
    '{"id":"safe_margin","weight":1,"passed":true,"evidence":"',
    '{"id":"logo_present","weight":1,"passed":true,"evidence":"',
    '{"id":"banned_phrases","weight":1,"passed":true,"evidence":"',
    '{"id":"text_contrast","weight":1,"passed":true,"evidence":"',
    '{"id":"palette_coverage","weight":1,"passed":true,"evidence":"',
    '","fix":null},',
    '"fix":null}],"skipped":[]}]}}',
    '{"seed":',
    '"assets":[{"n":0,"sha256":"',
    '","mime":"image/png","size":',
    ',"width":1080,"height":1080}],',
    '"evaluation":{"score":1,"passed":6,"tested":6,"variants":[{"n":0,"score":1,"passed":6,"tested":6,"checks":[',
  ].join(''),
);

/**
 * Below this many bytes of JSON a result is stored as its text: deflate would save little, and
 * setting up a stream primed with the dictionary costs more (~25 µs) than writing the bytes.
 * A rubric result is ~1.2 KB, so it is always deflated; a proxied tool's short answer is not.
 */
const DEFLATE_FROM_BYTES = 512;

/** The stored form of a result already serialised as JSON text. */
export function packResultJson(json: string): Buffer {
  return json.length < DEFLATE_FROM_BYTES ? Buffer.from(json, 'utf8') : deflateSync(json, { dictionary: DICTIONARY });
}

/** A stored result: zlib data starts with 0x78; plain JSON text (written by schema 2) with "{". */
export function unpackResult(blob: Buffer | null | undefined): JsonObject | null {
  if (blob == null) return null;
  const text = blob[0] === 0x78 ? inflateSync(blob, { dictionary: DICTIONARY }) : blob;
  return JSON.parse(text.toString('utf8')) as JsonObject;
}
