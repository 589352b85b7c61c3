import { describe, expect, it } from 'vitest';
import { TAGLINE_MAX_CHARS, taglineFrom } from '../../src/compose/copy.js';

describe('taglineFrom', () => {
  it('takes the line about the product and leaves the art direction out', () => {
    expect(taglineFrom('A ceramic mug for slow mornings, shot in soft morning light with room for a headline.')).toBe(
      'A ceramic mug for slow mornings.',
    );
    expect(
      taglineFrom('A reusable water bottle that keeps drinks cold for 24 hours. Shot for the spring launch.'),
    ).toBe('A reusable water bottle that keeps drinks cold for 24 hours.');
    expect(taglineFrom('Soft window light, overhead: our new oat milk carton')).toBe('Our new oat milk carton.');
    expect(taglineFrom('Create a product image of our best-selling cold brew, now in cans')).toBe(
      'Our best-selling cold brew, now in cans.',
    );
  });

  it('keeps a short brief as it is, with a full stop', () => {
    expect(taglineFrom('A jar of honey.')).toBe('A jar of honey.');
    expect(taglineFrom('cold brew in a can')).toBe('Cold brew in a can.');
    expect(taglineFrom('Ready when you are!')).toBe('Ready when you are.');
  });

  it('cuts a long first clause at a word, never on a connective', () => {
    const line = taglineFrom(
      'A handmade stoneware pour-over coffee dripper glazed in deep ocean blue with a matching cup and saucer set for two',
    );
    expect(line.length).toBeLessThanOrEqual(TAGLINE_MAX_CHARS + 1);
    expect(line).toBe('A handmade stoneware pour-over coffee dripper glazed.');
    expect(line).not.toMatch(/\b(in|with|for|a|the)\.$/);
  });

  it('gives no tagline for a brief that is all art direction', () => {
    expect(taglineFrom('Overhead shot, warm light, room for a headline.')).toBe('');
    expect(taglineFrom('Studio light; centred; copy space on the left')).toBe('');
  });
});
