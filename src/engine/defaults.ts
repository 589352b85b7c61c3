// The engine's defaults, in a module of their own so the command table can read them without loading
// the engine.

/** Runs rendered at once by one process, unless told. */
export const DEFAULT_CONCURRENCY = 2;
