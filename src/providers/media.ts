// A job's outputs as runledger stores them: fetched once, as soon as the job succeeds (the provider's
// URLs expire), with a size limit and their type read from their bytes, never from the URL or a
// header. Images (PNG, JPEG, WebP) and video (MP4, WebM) are kept; anything else is refused.
import { GenerationFailedError } from '../errors.js';
import { imageSize, sniffMime } from '../rubric/pixels.js';

export const OUTPUT_MIMES = ['image/png', 'image/jpeg', 'image/webp', 'video/mp4', 'video/webm'] as const;

/** The media type of `bytes` by their first bytes, among those kept; null for anything else. */
export function sniffMedia(bytes: Uint8Array): (typeof OUTPUT_MIMES)[number] | null {
  const image = sniffMime(bytes);
  if (image === 'image/png' || image === 'image/jpeg') return image;
  const ascii = (from: number, to: number) => Buffer.from(bytes.subarray(from, to)).toString('latin1');
  if (bytes.length >= 12 && ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'image/webp';
  // ISO base media (MP4, MOV): a first box "ftyp" at byte 4.
  if (bytes.length >= 12 && ascii(4, 8) === 'ftyp') return 'video/mp4';
  // Matroska/WebM: the EBML magic, then a DocType of "webm" early in the header.
  if (bytes.length >= 4 && bytes[0] === 0x1a && bytes[1] === 0x45 && bytes[2] === 0xdf && bytes[3] === 0xa3) {
    return ascii(0, Math.min(bytes.length, 64)).includes('webm') ? 'video/webm' : null;
  }
  return null;
}

export interface MediaFacts {
  width: number | null;
  height: number | null;
  /** Seconds, for a video whose header says. */
  durationSeconds: number | null;
}

/** Width, height and duration from the header, where it is read cheaply (PNG, JPEG, WebP VP8X/VP8, MP4); nulls otherwise. */
export function mediaFacts(bytes: Uint8Array, mime: string): MediaFacts {
  const none: MediaFacts = { width: null, height: null, durationSeconds: null };
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (mime === 'image/png' || mime === 'image/jpeg') return { ...none, ...(imageSize(bytes) ?? {}) };
  if (mime === 'image/webp' && view.length >= 30) {
    const chunk = view.toString('latin1', 12, 16);
    if (chunk === 'VP8X') return { ...none, width: 1 + view.readUIntLE(24, 3), height: 1 + view.readUIntLE(27, 3) };
    if (chunk === 'VP8 ')
      return { ...none, width: view.readUInt16LE(26) & 0x3fff, height: view.readUInt16LE(28) & 0x3fff };
    return none;
  }
  if (mime === 'video/mp4') return mp4Facts(view) ?? none;
  return none;
}

/**
 * The first video track's size (tkhd, 16.16 fixed point) and the movie's duration (mvhd), walking
 * the boxes moov → trak → tkhd; null when the header is not where a streamable MP4 keeps it.
 */
function mp4Facts(view: Buffer): MediaFacts | null {
  const boxes = (from: number, to: number) => {
    const found: { type: string; start: number; end: number }[] = [];
    for (let at = from; at + 8 <= to;) {
      let size = view.readUInt32BE(at);
      const type = view.toString('latin1', at + 4, at + 8);
      let header = 8;
      if (size === 1 && at + 16 <= to) {
        size = Number(view.readBigUInt64BE(at + 8));
        header = 16;
      } else if (size === 0) {
        size = to - at;
      }
      if (size < header || at + size > to) break;
      found.push({ type, start: at + header, end: at + size });
      at += size;
    }
    return found;
  };
  const moov = boxes(0, view.length).find((b) => b.type === 'moov');
  if (moov === undefined) return null;
  const facts: MediaFacts = { width: null, height: null, durationSeconds: null };
  for (const box of boxes(moov.start, moov.end)) {
    if (box.type === 'mvhd' && box.end - box.start >= 20) {
      const v1 = view[box.start] === 1;
      const scale = view.readUInt32BE(box.start + (v1 ? 20 : 12));
      const duration = v1 ? Number(view.readBigUInt64BE(box.start + 24)) : view.readUInt32BE(box.start + 16);
      if (scale > 0) facts.durationSeconds = Math.round((duration / scale) * 100) / 100;
    }
    if (box.type === 'trak' && facts.width === null) {
      const tkhd = boxes(box.start, box.end).find((b) => b.type === 'tkhd');
      if (tkhd === undefined) continue;
      // Width and height are the header's last 8 bytes.
      const width = view.readUInt32BE(tkhd.end - 8) / 65536;
      const height = view.readUInt32BE(tkhd.end - 4) / 65536;
      if (width > 0 && height > 0) Object.assign(facts, { width: Math.round(width), height: Math.round(height) });
    }
  }
  return facts;
}

/** Why an output was not kept: each a failure of the run, never billed. */
export type OutputProblem = 'too_large' | 'unsupported_type' | 'gone' | 'unreachable';

export class OutputFailed extends GenerationFailedError {
  constructor(
    readonly problem: OutputProblem,
    message: string,
    details: Record<string, unknown>,
    /** Worth another try (the host answered 5xx, or did not answer). */
    readonly retryable = false,
  ) {
    super(message, { output_problem: problem, ...details });
  }
}

/** Fetches one output: at most `maxBytes`, its type from its bytes. Sends no credentials: output URLs are the provider's storage, not its API. */
export async function fetchOutput(
  url: string,
  n: number,
  maxBytes: number,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ bytes: Buffer; mime: string }> {
  const details = { output: n, url: redactUrl(url) };
  let response: Response;
  const deadline = AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]);
  try {
    response = await fetch(url, { signal: deadline, redirect: 'follow' });
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw new OutputFailed(
      'unreachable',
      `Output ${n + 1} could not be fetched: ${(err as Error).message}.`,
      details,
      true,
    );
  }
  if (response.status === 403 || response.status === 404 || response.status === 410) {
    await response.body?.cancel();
    throw new OutputFailed(
      'gone',
      `Output ${n + 1} was no longer at the provider's URL (HTTP ${response.status}) when the job's success was seen: it expired first.`,
      { ...details, status: response.status },
    );
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new OutputFailed(
      'unreachable',
      `Output ${n + 1} could not be fetched (HTTP ${response.status}).`,
      { ...details, status: response.status },
      response.status >= 500 || response.status === 429,
    );
  }
  const declared = Number(response.headers.get('content-length'));
  const tooLarge = (size: number) =>
    new OutputFailed(
      'too_large',
      `Output ${n + 1} is larger than this server keeps (${size} bytes; the limit, --max-output-bytes, is ${maxBytes}).`,
      {
        ...details,
        size,
        limit: maxBytes,
      },
    );
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel();
    throw tooLarge(declared);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of response.body ?? []) {
      size += (chunk as Uint8Array).byteLength;
      if (size > maxBytes) throw tooLarge(size);
      chunks.push(Buffer.from(chunk as Uint8Array));
    }
  } catch (err) {
    if (err instanceof OutputFailed) throw err;
    if (signal.aborted) throw signal.reason;
    throw new OutputFailed(
      'unreachable',
      `Output ${n + 1} was cut off while it was fetched: ${(err as Error).message}.`,
      details,
      true,
    );
  }
  const bytes = Buffer.concat(chunks);
  const mime = sniffMedia(bytes);
  if (mime === null) {
    throw new OutputFailed(
      'unsupported_type',
      `Output ${n + 1} is not an image or video this server keeps (PNG, JPEG, WebP, MP4, WebM); the provider said ${response.headers.get('content-type') ?? 'nothing'}.`,
      { ...details, declared_type: response.headers.get('content-type') },
    );
  }
  return { bytes, mime };
}

/** A URL without its query: signed URLs carry their signature there, which no message should repeat. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}${u.search === '' ? '' : '?…'}`;
  } catch {
    return '(not a URL)';
  }
}
