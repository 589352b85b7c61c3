// What every step of a job run shares: the ledger's verbs it uses, the recovery points it stores, the
// runner's settings, and the news of runs it waits on. The steps live in the files beside this one.
import type { CallerPort, ChangeSource, ClaimedRun, Phase, WorkerPort } from '../../ledger/index.js';
import type { Logger } from '../../log.js';
import type { JobProvider, JobStatus } from '../../providers/jobs.js';
import type { ProviderSet } from '../../providers/index.js';
import type { Evaluation } from '../../rubric/index.js';
import type { JobPlan } from '../../tool.js';
import type { ThreadPool } from '../threads.js';
import type { RunNews } from './news.js';

export type JobsLedger = WorkerPort & ChangeSource & Pick<CallerPort, 'getRun'>;

/** "job/submitting": a submit is about to be sent, so a resumed run knows one may exist. */
export interface Submitting {
  at: string;
  provider: string;
  /** Whether the submit asked for webhooks (its URL names the run). */
  webhook: boolean;
  /** The last submit certainly made no job (refused at the door): a resumed run may submit again. */
  none?: true;
}

/** "job/status": the job's last status seen, and what it made of the run's progress. */
export interface StatusPoint {
  state: JobStatus['state'];
  text: string;
  at: string;
}

/** An output not scored, and why: never a made-up score. */
export interface Unscored {
  unscored: string;
}

type JobRecovery = {
  [Phase.composing]: { job: JobPlan };
  'job/submitting': Submitting;
  'job/status': StatusPoint;
  [output: `evaluation/${number}`]: Evaluation | Unscored;
};

/** A claimed run, as a job run reads its recovery points. */
export type JobRun = ClaimedRun<JobRecovery>;

export interface JobRunnerOptions {
  ledger: JobsLedger;
  providers: ProviderSet;
  threads: ThreadPool;
  log: Logger;
  /** The public base URL a provider sends webhooks to (…/webhooks/<provider>?run=<id>); null: polling only. */
  publicUrl: string | null;
  /** How long a run resumed without its job's handle looks for the job before ending outcome_unknown. */
  orphanSearchMs: number;
  /** The largest output fetched and stored. */
  maxOutputBytes: number;
}

/** What the steps of a job run are handed in place of the runner they were methods of. */
export interface JobContext {
  readonly ledger: JobsLedger;
  readonly log: Logger;
  readonly opts: JobRunnerOptions;
  /** Wakes a step waiting on a run when the ledger hears of a change of it. */
  readonly news: RunNews;
}

/** A wait of `ms` with half of it jittered: retries spread out, yet each waits at least half. */
export const jittered = (ms: number) => ms / 2 + (Math.random() * ms) / 2;

export function webhookUrl(ctx: JobContext, provider: JobProvider, runId: string): string | null {
  if (ctx.opts.publicUrl === null || !provider.asksForWebhooks || provider.webhooks === null) return null;
  return `${ctx.opts.publicUrl.replace(/\/+$/, '')}/webhooks/${provider.id}?run=${encodeURIComponent(runId)}`;
}
