// A check's verdict, as every check gives it: passed with its evidence, or failed with a fix too. Shares
// are written one way (pct) in every check's evidence, so reports read alike whichever check wrote them.
import type { RubricCheck } from './index.js';

export type Outcome = Omit<RubricCheck, 'id' | 'weight'>;
export const pass = (evidence: string): Outcome => ({ passed: true, evidence, fix: null });
export const fail = (evidence: string, fix: string): Outcome => ({ passed: false, evidence, fix });

export const pct = (share: number) => `${(share * 100).toFixed(1)}%`;
