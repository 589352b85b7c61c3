// Reading a request body within limits: at most so many bytes, all of it within a deadline. Shared by
// /mcp and the webhook route.
import type { IncomingMessage } from 'node:http';

export class BodyTooLarge extends Error {}
export class BodyTooSlow extends Error {}

/** The body, if all of it (at most `limit` bytes) arrives within `timeoutMs`. */
export function readBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<string> {
  return readBodyBytes(req, limit, timeoutMs).then((bytes) => bytes.toString('utf8'));
}

/** The body as bytes (a signature is over the bytes as sent). */
export function readBodyBytes(req: IncomingMessage, limit: number, timeoutMs: number): Promise<Buffer> {
  if (Number(req.headers['content-length']) > limit) return Promise.reject(new BodyTooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => reject(new BodyTooSlow()), timeoutMs);
    const settle = (end: () => void) => {
      clearTimeout(timer);
      end();
    };
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      else settle(() => reject(new BodyTooLarge()));
    });
    req.on('end', () => settle(() => resolve(Buffer.concat(chunks))));
    req.on('error', (err) => settle(() => reject(err)));
  });
}
