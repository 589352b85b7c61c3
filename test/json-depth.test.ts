import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, nestedPast } from '../src/json-depth.js';

/** `depth` arrays, one inside the other, around `inner`. */
const nest = (depth: number, inner: unknown = 1): unknown => {
  let value = inner;
  for (let i = 0; i < depth; i++) value = [value];
  return value;
};

describe('nestedPast', () => {
  it('accepts values nested up to the limit, scalars and empty containers included', () => {
    expect(nestedPast(1, 1)).toBeNull();
    expect(nestedPast(null, 1)).toBeNull();
    expect(nestedPast({}, 1)).toBeNull();
    expect(nestedPast({ a: nest(MAX_JSON_DEPTH - 1) }, MAX_JSON_DEPTH)).toBeNull();
  });

  it('names the path to the first array or object past the limit', () => {
    expect(nestedPast({ a: 1, b: [{ c: [] }] }, 3)).toEqual(['b', 0, 'c']);
    expect(nestedPast({ a: nest(MAX_JSON_DEPTH) }, MAX_JSON_DEPTH)?.slice(0, 2)).toEqual(['a', 0]);
  });

  it('walks a 100,000-deep array without overflowing the stack', () => {
    const bomb = JSON.parse('['.repeat(100_000) + ']'.repeat(100_000)) as unknown;
    expect(() => JSON.stringify(bomb)).toThrow(RangeError);
    expect(nestedPast({ brief: bomb }, MAX_JSON_DEPTH)).toHaveLength(MAX_JSON_DEPTH);
  });
});
