// The run viewer: a page on the HTTP server where an operator sees a tenant's runs — phases with their
// times, images, brand scores with every check, and charges — filtered by tool and phase. The page and
// its script hold no data; every run, image and total comes from /viewer/api/*, behind the same bearer
// token (so the same tenant) and the same Host and Origin checks as /mcp. A tenant sees only its runs:
// another tenant's run id answers 404, exactly like an unknown one.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { asRunledgerError, ErrorCode } from '../errors.js';
import { isBilled, MAX_PAGE_SIZE, PHASES, type Phase, type Run, type RunLedger } from '../ledger/index.js';
import type { Logger } from '../log.js';
import { VIEWER_CSS, VIEWER_HTML, VIEWER_JS } from './viewer-page.js';

export interface ViewerDeps {
  ledger: RunLedger;
  /** Answers 403 and returns false when the request's Host or Origin is not allowed. */
  allowed(req: IncomingMessage, res: ServerResponse): boolean;
  /** The tenant of the request's bearer token, or null after answering 401. */
  authenticate(req: IncomingMessage, res: ServerResponse): string | null;
  log: Logger;
}

/** Everything the viewer answers under. */
export const isViewerPath = (path: string): boolean => path === '/viewer' || path.startsWith('/viewer/');

/** The page may load only its own script and style, show only images it fetched itself, and sit in no frame. */
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

interface ViewerCheck {
  id: string;
  passed: boolean;
  evidence: string;
  fix: string | null;
}

/** A run as the viewer shows it: what an operator asks of a run, and nothing the ledger keeps for itself. */
export interface ViewerRun {
  run_id: string;
  tool: string;
  idempotency_key: string;
  phase: Phase;
  created_at: string;
  progress: number;
  phases: { phase: Phase; at: string }[];
  attempts: number;
  cost_credits: number;
  /** Credits charged for this run: its cost once done, else 0 (failures and cancellations are free). */
  charged: number;
  error: { code: string; message: string } | null;
  score: number | null;
  generator: string | null;
  assets: { n: number; mime: string; width: number | null; height: number | null; size: number; sha256: string }[];
  variants: {
    n: number;
    score: number;
    passed: number;
    tested: number;
    checks: ViewerCheck[];
    skipped: { id: string; reason: string }[];
  }[];
  /** Outputs the rubric did not score (a video), each with why. */
  unscored: { n: number; reason: string }[];
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/**
 * Reads a run's result defensively: a generation run holds assets and an evaluation, a proxied call
 * an upstream answer of any shape, and a result stored by an older version may lack fields.
 */
export function viewerRun(run: Run): ViewerRun {
  const result = isObject(run.result) ? run.result : {};
  const evaluation = isObject(result.evaluation) ? result.evaluation : {};
  const generator = isObject(result.generator) ? result.generator : null;
  const assets = (Array.isArray(result.assets) ? result.assets : []).filter(isObject).map((a) => ({
    n: num(a.n) ?? 0,
    mime: typeof a.mime === 'string' ? a.mime : 'application/octet-stream',
    width: num(a.width),
    height: num(a.height),
    size: num(a.size) ?? 0,
    sha256: typeof a.sha256 === 'string' ? a.sha256 : '',
  }));
  const variants = (Array.isArray(evaluation.variants) ? evaluation.variants : []).filter(isObject).map((v) => ({
    n: num(v.n) ?? 0,
    score: num(v.score) ?? 0,
    passed: num(v.passed) ?? 0,
    tested: num(v.tested) ?? 0,
    checks: (Array.isArray(v.checks) ? v.checks : []).filter(isObject).map((c) => ({
      id: String(c.id),
      passed: c.passed === true,
      evidence: String(c.evidence ?? ''),
      fix: typeof c.fix === 'string' ? c.fix : null,
    })),
    skipped: (Array.isArray(v.skipped) ? v.skipped : [])
      .filter(isObject)
      .map((s) => ({ id: String(s.id), reason: String(s.reason ?? '') })),
  }));
  const unscored = (Array.isArray(evaluation.unscored) ? evaluation.unscored : [])
    .filter(isObject)
    .map((u) => ({ n: num(u.n) ?? 0, reason: String(u.reason ?? '') }));
  return {
    run_id: run.id,
    tool: run.tool,
    idempotency_key: run.idempotencyKey,
    phase: run.phase,
    created_at: run.createdAt,
    progress: run.progress,
    phases: run.phases,
    attempts: run.attempts,
    cost_credits: run.cost,
    charged: isBilled(run.phase) ? run.cost : 0,
    error: run.error === null ? null : { code: run.error.code, message: run.error.message },
    score: num(evaluation.score),
    generator:
      generator === null
        ? null
        : [generator.provider, generator.version].filter((s) => typeof s === 'string').join(' '),
    assets,
    variants,
    unscored,
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...PAGE_HEADERS });
  res.end(JSON.stringify(body));
}

function sendText(res: ServerResponse, type: string, body: string): void {
  res.writeHead(200, { 'content-type': `${type}; charset=utf-8`, ...PAGE_HEADERS });
  res.end(body);
}

const STATUS_OF: Partial<Record<ErrorCode, number>> = {
  [ErrorCode.notFound]: 404,
  [ErrorCode.validationFailed]: 400,
  [ErrorCode.storageUnavailable]: 503,
};

export function createViewer(deps: ViewerDeps) {
  async function api(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    const tenant = deps.authenticate(req, res);
    if (tenant === null) return;
    try {
      if (path === '/viewer/api/runs') {
        const phase = query.get('phase') ?? undefined;
        if (phase !== undefined && !(PHASES as readonly string[]).includes(phase)) {
          sendJson(res, 400, {
            error: { code: 'validation_failed', message: `phase must be one of ${PHASES.join(', ')}` },
          });
          return;
        }
        const limit = Math.min(MAX_PAGE_SIZE, Math.max(1, Number(query.get('limit') ?? 25) || 25));
        const [page, usage] = await Promise.all([
          deps.ledger.listRuns(tenant, {
            limit,
            ...(query.get('tool') ? { tool: query.get('tool')! } : {}),
            ...(phase ? { phase: phase as Phase } : {}),
            ...(query.get('cursor') ? { cursor: query.get('cursor')! } : {}),
          }),
          deps.ledger.usage(tenant),
        ]);
        sendJson(res, 200, {
          tenant,
          runs: page.runs.map(viewerRun),
          next_cursor: page.nextCursor,
          usage: {
            runs: usage.runs,
            charges: usage.charges,
            credits: usage.credits,
            replays_absorbed: usage.replaysAbsorbed,
            tools: Object.keys(usage.byTool).sort(),
          },
          phases: PHASES,
        });
        return;
      }
      const asset = /^\/viewer\/api\/runs\/([^/]+)\/assets\/(\d+)$/.exec(path);
      if (asset) {
        const stored = await deps.ledger.readAsset(tenant, decodeURIComponent(asset[1]!), Number(asset[2]));
        res.writeHead(200, {
          'content-type': stored.mime,
          'content-length': stored.bytes.length,
          etag: `"${stored.sha256}"`,
          ...PAGE_HEADERS,
        });
        res.end(stored.bytes);
        return;
      }
      const one = /^\/viewer\/api\/runs\/([^/]+)$/.exec(path);
      if (one) {
        sendJson(res, 200, { tenant, run: viewerRun(await deps.ledger.getRun(tenant, decodeURIComponent(one[1]!))) });
        return;
      }
      sendJson(res, 404, { error: { code: 'not_found', message: `nothing at ${path}` } });
    } catch (err) {
      const e = asRunledgerError(err);
      const status = STATUS_OF[e.code] ?? 500;
      if (status === 500) deps.log.error('viewer request failed', { path, error: e.message });
      // Another tenant's run reads as not found, like one that never existed: the message names no tenant.
      sendJson(res, status, { error: { code: e.code, message: status === 500 ? 'Internal error' : e.message } });
    }
  }

  return {
    async handle(req: IncomingMessage, res: ServerResponse, url: string): Promise<void> {
      if (!deps.allowed(req, res)) return;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET', 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'method_not_allowed', message: 'the viewer only reads: use GET' } }));
        return;
      }
      const parsed = new URL(url, 'http://viewer.invalid');
      const path = parsed.pathname;
      if (path === '/viewer' || path === '/viewer/') sendText(res, 'text/html', VIEWER_HTML);
      else if (path === '/viewer/viewer.js') sendText(res, 'text/javascript', VIEWER_JS);
      else if (path === '/viewer/viewer.css') sendText(res, 'text/css', VIEWER_CSS);
      else if (path.startsWith('/viewer/api/')) await api(req, res, path, parsed.searchParams);
      else sendJson(res, 404, { error: { code: 'not_found', message: `nothing at ${path}` } });
    },
  };
}
