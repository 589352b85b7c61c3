// One entry of the flag table (src/commands/table.ts): how parseArgs reads the flag, and what its help says.
export interface Flag {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: true;
  /** What the value is, as help shows it: `--db PATH|URL`. */
  arg?: string;
  /** What the flag does; help adds the range, the environment variable and the default after it. */
  help: string;
  /** Read when the flag is not given. */
  env?: string;
  /** Whole numbers: the bounds, checked and shown. */
  range?: readonly [number, number];
  /** Used when neither the flag nor its environment variable is given, and shown in help. */
  default?: string | number | ((env: NodeJS.ProcessEnv) => string);
  /** Shown in help when the default is not a value of its own (decided elsewhere, random, ...). */
  shown?: string;
}
