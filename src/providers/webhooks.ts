// A webhook from a job provider, from its HTTP request to the ledger: verified (signature, and a
// timestamp within five minutes), read (the job id and status its definition says where to find; the
// run from the URL it was sent to), and stored, deduped by the provider's webhook id. A webhook only
// tells a run's holder to ask the provider now: nothing in it is taken as the job's status, so a
// deployment that never receives one loses nothing but time.
import type { WebhookPort } from '../ledger/index.js';
import type { Logger } from '../log.js';
import type { ProviderSet } from './index.js';

export interface WebhookAnswer {
  status: number;
  body: Record<string, unknown>;
}

export type WebhookReceiver = (
  provider: string,
  headers: Record<string, string | string[] | undefined>,
  body: Buffer,
  query: URLSearchParams,
) => Promise<WebhookAnswer>;

export function createWebhookReceiver(providers: ProviderSet, ledger: WebhookPort, log: Logger): WebhookReceiver {
  return async (name, headers, body, query) => {
    const provider = providers.named(name);
    if (provider?.kind !== 'job' || provider.webhooks === null) {
      return { status: 404, body: { error: `no job provider named "${name}" takes webhooks here` } };
    }
    const verdict = await provider.webhooks.verify(headers, body);
    if (!verdict.ok) {
      log.warn('webhook refused', { provider: name, reason: verdict.reason });
      return { status: 401, body: { error: `webhook refused: ${verdict.reason}` } };
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      return { status: 400, body: { error: 'the webhook body is not JSON' } };
    }
    const { jobId, status } = provider.readWebhook(parsed);
    const runId = query.get('run');
    const outcome = await ledger.recordWebhook({ provider: name, webhookId: verdict.webhookId, runId, jobId, status });
    if (outcome.kind === 'ignored') {
      // Acknowledged all the same: a provider retrying it for hours would change nothing.
      log.debug('webhook ignored', { provider: name, run_id: runId, job_id: jobId, reason: outcome.reason });
      return { status: 200, body: { outcome: 'ignored', reason: outcome.reason } };
    }
    log.debug(outcome.kind === 'stored' ? 'webhook stored' : 'webhook repeated', {
      provider: name,
      run_id: outcome.runId,
      job_id: jobId,
      status,
    });
    return { status: 200, body: { outcome: outcome.kind, run_id: outcome.runId } };
  };
}
