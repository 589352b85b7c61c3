// POST /webhooks/<provider>: where job providers send their webhooks. Not behind the bearer tokens (a
// provider cannot send them) nor the Host/Origin checks (a provider is no browser); its guard is the
// signature (receiver in providers/webhooks.ts), checked before anything is stored. The connection cap,
// the body limit and the body deadline apply as on /mcp.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpConfig } from '../config-sections.js';
import { asRunledgerError, StorageUnavailableError } from '../errors.js';
import type { Logger } from '../log.js';
import type { WebhookReceiver } from '../providers/webhooks.js';
import { BodyTooLarge, BodyTooSlow, readBodyBytes } from './body.js';

export const isWebhookPath = (path: string): boolean => path.startsWith('/webhooks/');

export interface WebhookRouteDeps {
  receive: WebhookReceiver | undefined;
  http: Pick<HttpConfig, 'maxBodyBytes' | 'bodyTimeoutMs'>;
  /** Writes a JSON answer; `last` makes it the connection's last (a request refused before its body was read). */
  answer(res: ServerResponse, status: number, body: object, last?: boolean, headers?: Record<string, string>): void;
  count(kind: string): void;
  log: Logger;
}

export function createWebhookRoute({ receive, http, answer, count, log }: WebhookRouteDeps) {
  return async function handle(req: IncomingMessage, res: ServerResponse, url: string): Promise<void> {
    const parsed = new URL(url, 'http://webhook.invalid');
    const name = decodeURIComponent(parsed.pathname.slice('/webhooks/'.length));
    if (req.method !== 'POST') {
      answer(res, 405, { error: 'webhooks are POSTed' }, true, { allow: 'POST' });
      return;
    }
    if (receive === undefined || !/^[a-z][a-z0-9-]{0,31}$/.test(name)) {
      answer(res, 404, { error: `no job provider named "${name}" takes webhooks here` }, true);
      return;
    }
    let body: Buffer;
    try {
      body = await readBodyBytes(req, http.maxBodyBytes, http.bodyTimeoutMs);
    } catch (err) {
      if (err instanceof BodyTooLarge) {
        answer(res, 413, { error: `the body is larger than ${http.maxBodyBytes} bytes` }, true);
        return;
      }
      if (err instanceof BodyTooSlow) {
        count('body_timeout');
        answer(res, 408, { error: `the body must arrive within ${http.bodyTimeoutMs} ms` }, true);
        return;
      }
      throw err;
    }
    try {
      const outcome = await receive(name, req.headers, body, parsed.searchParams);
      if (outcome.status === 401) count('webhooks_refused');
      answer(res, outcome.status, outcome.body);
    } catch (err) {
      // Not stored: a 503 makes the provider send it again later.
      const e = asRunledgerError(err);
      if (!(e instanceof StorageUnavailableError)) log.error('webhook failed', { provider: name, error: e.message });
      answer(res, 503, { error: 'the webhook could not be stored; send it again later' }, false, {
        'retry-after': '5',
      });
    }
  };
}
