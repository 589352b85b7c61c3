// What a prompt-based provider is told about the brand: the same brand kit the built-in composer
// lays out, put in words an image model follows.
import type { BrandKit } from '../brand.js';
import type { SizeTarget } from './scene.js';

/** What a tool asks of a prompt-based provider: one prompt, drawn `count` times at the target size. */
export interface PromptPlan {
  prompt: string;
  target: SizeTarget;
  count: number;
}

export function describeBrand(brand: BrandKit): string {
  const colours = brand.palette.map((c) => `${c.hex} (${c.role})`).join(', ');
  const lines = [
    `Brand: ${brand.name}. Use only the brand colours ${colours} for large areas.`,
    `Show the logo as the wordmark "${brand.logo_text}", clearly legible, inside a generous safe margin from every edge.`,
    'Keep all text high-contrast against what it sits on.',
  ];
  if (brand.tone_words.length > 0) lines.push(`Tone: ${brand.tone_words.join(', ')}.`);
  if (brand.banned_phrases.length > 0)
    lines.push(`Never write these phrases: ${brand.banned_phrases.map((p) => `"${p}"`).join(', ')}.`);
  return lines.join(' ');
}
