// Phases move forward only; a terminal run never changes.

export const Phase = {
  queued: 'queued',
  composing: 'composing',
  rendering: 'rendering',
  done: 'done',
  failed: 'failed',
  canceled: 'canceled',
} as const;
export type Phase = (typeof Phase)[keyof typeof Phase];

export const PHASES: readonly [Phase, ...Phase[]] = [
  Phase.queued,
  Phase.composing,
  Phase.rendering,
  Phase.done,
  Phase.failed,
  Phase.canceled,
];

/** The working phases in the order a run passes through them. */
const ORDER: readonly Phase[] = [Phase.queued, Phase.composing, Phase.rendering, Phase.done];

export const TERMINAL_PHASES: readonly Phase[] = [Phase.done, Phase.failed, Phase.canceled];
export const LIVE_PHASES: readonly Phase[] = PHASES.filter((p) => !TERMINAL_PHASES.includes(p));

export function isTerminal(phase: Phase): boolean {
  return phase === Phase.done || phase === Phase.failed || phase === Phase.canceled;
}

/** A run is charged exactly when it reaches done; failures and cancellations never are. */
export function isBilled(phase: Phase): boolean {
  return phase === Phase.done;
}

/** Whether a run in `from` may move to `to`: strictly forward, or to failed/canceled from any live phase. */
export function canAdvance(from: Phase, to: Phase): boolean {
  if (isTerminal(from)) return false;
  if (to === Phase.failed || to === Phase.canceled) return true;
  return ORDER.indexOf(to) > ORDER.indexOf(from);
}

/** Progress 0–1 a phase stands for, so pollers see a number that only rises. */
export function phaseProgress(phase: Phase): number {
  switch (phase) {
    case Phase.queued:
      return 0;
    case Phase.composing:
      return 0.25;
    case Phase.rendering:
      return 0.5;
    default:
      return 1;
  }
}

/** A phase list as SQL literals, for `phase IN (...)`: the lists are written once, here. */
export function sqlPhaseList(phases: readonly Phase[]): string {
  return phases.map((p) => `'${p}'`).join(', ');
}
