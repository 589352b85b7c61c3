// What a replay keeps of each tools/call it sends: an exchange (what was asked, under which fault,
// what came back), the progress that came after an answer, and a run as its resource shows it. The
// session records them; the invariants and the report judge them.
import type { Answer } from './answers.js';
import type { FaultKind } from './options.js';

/**
 * first: the first request of a case; copy: a duplicate or a burst member; retry: sent after the
 * fault; conflict: the same key with other arguments; late: the last retry, after runs settled;
 * poll: the harness following a run; call: a recorded call replayed as it was.
 */
export type Role = 'first' | 'copy' | 'retry' | 'conflict' | 'late' | 'poll' | 'call';

export interface Exchange {
  /** "3.2": case 3, its second request; "settle.1" and "late.1" come after the cases. */
  id: string;
  /** The transcript line of the recorded call this replays, or null for the harness's own polls. */
  line: number | null;
  fault: FaultKind | null;
  tool: string;
  role: Role;
  /** Calls with one group must answer alike: (tool, key), or (tool, arguments) for a tool without a key. */
  group: string | undefined;
  key: string | undefined;
  /**
   * answered: an answer came back; aborted: the client gave up on it (timed out or cancelled it);
   * interrupted: the connection died under it (a SIGKILL, a broken stream); failed: anything else, in `note`.
   */
  status: 'answered' | 'aborted' | 'interrupted' | 'failed';
  /** The client took the answer in: false when it was aborted, interrupted or dropped as "lost". */
  acknowledged: boolean;
  answer: Answer | undefined;
  ms: number;
  note: string | undefined;
  /** Progress notifications that arrived for it. */
  progress: number;
  /** Around a conflict, the server's count of runs, when its usage tool counts them. */
  runsBefore?: number;
  runsAfter?: number;
}

/** A progress notification that came after its call had been answered. */
export interface LateProgress {
  call: string;
  tool: string;
  afterMs: number;
}

export interface RunResource {
  phase: string | undefined;
  billed: boolean | undefined;
}
