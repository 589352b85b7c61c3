// Named places where a test can make this process die, to prove that a run survives a crash exactly
// there (fault injection, as databases test their recovery). Armed only through the environment
// variable RUNLEDGER_FAILPOINTS, a comma list of "point" or "point=text" (the point fires only when
// its subject contains the text); unset, as in production, every point is a no-op.

export type FailpointName =
  /** A run entered composing; its scenes or prompt are not yet made. */
  | 'compose'
  /** Scenes or prompt made, not yet stored as the recovery point. */
  | 'composed'
  /** An image was asked of the provider; its answer has not come back. */
  | 'generate'
  /** The provider answered; the image is not yet attached to the run. */
  | 'generated'
  /** Every image attached and scored; the run is not yet finished. */
  | 'finish'
  /** Inside the transaction that marks the run done and writes its charge, before it commits. */
  | 'billing'
  /** Right after any write that counts as progress for the run. */
  | 'progress'
  /** A job provider's submit (the paid step) is about to be sent; "submitting" is stored. */
  | 'submit'
  /** The job provider answered the submit; the job's handle is not yet stored. */
  | 'submitted'
  /** A render thread is given a scene: the thread dies (not the process). */
  | 'render-thread'
  /** A render thread is given a scene: it never finishes. */
  | 'render-hang';

const armed = new Map<string, string>(
  (process.env.RUNLEDGER_FAILPOINTS ?? '')
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '')
    .map((item) => {
      const at = item.indexOf('=');
      return at < 0 ? [item, ''] : [item.slice(0, at), item.slice(at + 1)];
    }),
);

/** Whether `name` is armed for this subject. */
export function failpointArmed(name: FailpointName, subject = ''): boolean {
  const text = armed.get(name);
  return text !== undefined && subject.includes(text);
}

/** SIGKILLs this process when `name` is armed for this subject: no cleanup, no flush, as a crash. */
export function failpoint(name: FailpointName, subject?: string): void {
  if (failpointArmed(name, subject)) process.kill(process.pid, 'SIGKILL');
}
