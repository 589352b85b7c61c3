// Headless Chromium for the page tests: Debian's chromium package (never a downloaded browser), driven
// by playwright-core. Without it the tests skip, except under CI, where .ci/run installs it and its
// absence fails the run.
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.RUNLEDGER_CHROMIUM ?? '/usr/bin/chromium';

/** Whether the page tests can run here. Under CI a missing browser is an error, not a skip. */
export function chromiumAvailable(): boolean {
  if (existsSync(CHROMIUM)) return true;
  if (process.env.CI) throw new Error(`CI needs Chromium at ${CHROMIUM}; .ci/run installs Debian's chromium package`);
  return false;
}

export function launch(): Promise<Browser> {
  // No sandbox: CI runs as root in a container, where Chromium's own sandbox cannot start.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
}

/** Where the page tests keep their screenshots (for a person to look at; not compared). */
export const SCREENSHOTS = fileURLToPath(new URL('../../runledger-out/screenshots/', import.meta.url));

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
};

/**
 * A static server for a test host page: `/` is `html`, `/nm/...` serves node_modules read-only (so the
 * page can import @modelcontextprotocol/ext-apps' real AppBridge through an import map).
 */
export async function serveHostPage(html: string): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent((req.url ?? '/').split('?')[0]!);
    if (path === '/') {
      res.writeHead(200, { 'content-type': TYPES['.html']! });
      res.end(html);
      return;
    }
    const file = normalize(join(ROOT, 'node_modules', path.replace(/^\/nm\//, '')));
    if (!path.startsWith('/nm/') || !file.startsWith(join(ROOT, 'node_modules')) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
