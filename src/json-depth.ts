// How deep parsed JSON nests, measured without recursion: JSON.parse builds a value of any depth, but
// JSON.stringify, zod and the canonical fingerprint recurse, and a 100k-deep array overflows their stack.

/** The deepest nesting of arrays and objects accepted in a tool's arguments (and in any message). */
export const MAX_JSON_DEPTH = 64;

interface Step {
  node: object;
  level: number;
  key: string | number;
  parent: Step | undefined;
}

/**
 * The path to the first array or object nested more than `limit` levels inside `value` (which is
 * itself level 1), or null when none is. The walk never goes past the limit, so it costs at most one
 * visit per value of the input.
 */
export function nestedPast(value: unknown, limit: number): (string | number)[] | null {
  if (typeof value !== 'object' || value === null) return null;
  const stack: Step[] = [{ node: value, level: 1, key: '', parent: undefined }];
  for (let step = stack.pop(); step !== undefined; step = stack.pop()) {
    if (step.level > limit) return pathOf(step);
    const node = step.node as Record<string, unknown> | unknown[];
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const child = node[i];
        if (typeof child === 'object' && child !== null)
          stack.push({ node: child, level: step.level + 1, key: i, parent: step });
      }
    } else {
      for (const key of Object.keys(node)) {
        const child = node[key];
        if (typeof child === 'object' && child !== null)
          stack.push({ node: child, level: step.level + 1, key, parent: step });
      }
    }
  }
  return null;
}

function pathOf(step: Step): (string | number)[] {
  const path: (string | number)[] = [];
  for (let at: Step | undefined = step; at?.parent !== undefined; at = at.parent) path.unshift(at.key);
  return path;
}
