// The idempotency invariants, judged from what the server answered, in the order the report shows
// them. Each says whether it held, was broken, or could not be checked against this server and why
// (verdicts.ts): a check that was not run never passes. The checks live by what they judge: key by
// key (key-invariants.ts), run by run (run-invariants.ts), and the wire's progress notifications here.
import { conflicts, oneRunPerKey, sameAnswer } from './key-invariants.js';
import { noAcknowledgedRunLost, oneChargePerRun, terminalWithinBound } from './run-invariants.js';
import { plural, result, type Evidence, type InvariantResult } from './verdicts.js';

export function checkInvariants(evidence: Evidence): InvariantResult[] {
  return [
    oneRunPerKey(evidence),
    sameAnswer(evidence),
    oneChargePerRun(evidence),
    noAcknowledgedRunLost(evidence),
    terminalWithinBound(evidence),
    ...conflicts(evidence),
    noProgressAfterResponse(evidence),
  ];
}

/** Progress notifications stop once their call is answered: the one invariant about the wire, not keys or runs. */
function noProgressAfterResponse({ exchanges, lateProgress, progressSeen }: Evidence): InvariantResult {
  const calls = exchanges.filter((e) => e.status === 'answered' || e.answer !== undefined).length;
  const violations = lateProgress.map((late) => ({
    message: `${late.call}: a progress notification for ${late.tool} came ${late.afterMs} ms after its answer`,
    calls: [late.call],
  }));
  const note =
    progressSeen === 0
      ? ' (the server sent no progress notifications)'
      : `, ${plural(progressSeen, 'progress notification')}`;
  return result(
    'no-progress-after-response',
    calls,
    ['answered call that asked for progress', 'answered calls that asked for progress'],
    violations,
    { because: 'no call was answered', missing: [] },
    note,
  );
}
