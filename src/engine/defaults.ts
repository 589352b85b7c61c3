// The engine's defaults, in a module of their own so the command table can read them without loading
// the engine.

/** Runs rendered at once by one process, unless told. */
export const DEFAULT_CONCURRENCY = 2;

/** How long a run whose submit's answer a crash lost looks for its job before ending outcome_unknown. */
export const DEFAULT_ORPHAN_SEARCH_MS = 120_000;

/** The largest output (image or video) fetched from a job provider and stored. */
export const DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024 * 1024;
