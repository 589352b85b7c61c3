// Who may use the service: a request names an allowed Host and, from a browser, an allowed Origin
// (against DNS rebinding and other sites' pages), and carries a tenant's bearer token when there are
// tokens. /mcp and the run viewer check both; webhooks carry a signature instead (webhooks.ts).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HttpConfig } from '../config-sections.js';
import { refuse } from './answers.js';
import type { TokenTable } from './tokens.js';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export interface Access {
  /** Answers 403 and returns false when the request's Host or Origin is not allowed. */
  allowed(req: IncomingMessage, res: ServerResponse): boolean;
  /** The tenant of the request's bearer token, or null after answering 401. */
  authenticate(req: IncomingMessage, res: ServerResponse): string | null;
}

export interface AccessDeps {
  http: Pick<HttpConfig, 'host' | 'allowedHosts' | 'allowedOrigins'>;
  tokens: TokenTable;
  /** The port this server listens on: the allowed Hosts and Origins name it. */
  port: number;
  /** The tenant of every request when there are no tokens. */
  defaultTenant: string;
}

export function createAccess({ http, tokens, port, defaultTenant }: AccessDeps): Access {
  const allowedHosts = new Set(
    [...LOOPBACK, http.host]
      .map((h) => `${h.includes(':') && !h.startsWith('[') ? `[${h}]` : h}:${port}`)
      .concat(http.allowedHosts),
  );
  const allowedOrigins = new Set(
    ['localhost', '127.0.0.1', '[::1]'].map((h) => `http://${h}:${port}`).concat(http.allowedOrigins),
  );

  /** The tenant for this request, or null after answering 401. */
  function authenticate(req: IncomingMessage, res: ServerResponse): string | null {
    if (tokens.size === 0) return defaultTenant;
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const tenant = match ? tokens.tenantFor(match[1]!) : null;
    if (tenant !== null) return tenant;
    const challenge = match ? 'Bearer realm="runledger", error="invalid_token"' : 'Bearer realm="runledger"';
    refuse(
      res,
      401,
      -32001,
      match ? 'unauthorized: the bearer token is not valid' : 'unauthorized: send Authorization: Bearer <token>',
      { code: 'unauthorized' },
      {
        'www-authenticate': challenge,
      },
    );
    return null;
  }

  /** The Host and Origin checks (DNS rebinding, other sites' pages), for /mcp and the run viewer; false after a 403. */
  function allowed(req: IncomingMessage, res: ServerResponse): boolean {
    const host = req.headers.host ?? '';
    if (!allowedHosts.has(host)) {
      refuse(res, 403, -32000, `Forbidden: Host "${host}" is not allowed (add it with --allowed-hosts)`);
      return false;
    }
    const origin = req.headers.origin;
    if (origin !== undefined && !allowedOrigins.has(origin)) {
      refuse(res, 403, -32000, `Forbidden: Origin "${origin}" is not allowed (add it with --allowed-origins)`);
      return false;
    }
    return true;
  }

  return { allowed, authenticate };
}
