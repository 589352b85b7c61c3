export * from './types.js';
export { Phase, PHASES, isTerminal, canAdvance, phaseProgress } from './phases.js';
export { fingerprint, canonicalJson, differingFields, keyProblem, assertValidKey, KEY_MIN, KEY_MAX } from './fingerprint.js';
export { SqliteLedger, DEFAULT_LEASE_MS, DEFAULT_RETENTION_MS, type SqliteLedgerOptions } from './sqlite.js';
