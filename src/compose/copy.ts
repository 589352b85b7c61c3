// The words an image carries that nobody typed as such: a tagline taken from a brief. A brief is
// written to the art director ("…shot in morning light, room for a headline"); what goes on the image
// is the short line about the product in it, never the whole brief.

/** A tagline longer than this is cut at a word: it is one line under a headline, not a paragraph. */
export const TAGLINE_MAX_CHARS = 60;

/** Clauses that direct the picture rather than describe the product. */
const ART_DIRECTION = new RegExp(
  '\\b(' +
    [
      'shot',
      'shoot(ing)?',
      'photo(graph(ed|y)?|s)?',
      'pictured',
      'lighting',
      'lit',
      '(soft|warm|cool|natural|morning|evening|golden|studio|diffused?|hard|dramatic|window|day) ?light',
      'backdrop',
      'background',
      'camera',
      'lens',
      'bokeh',
      'close-?up',
      'overhead',
      'top-?down',
      'flat ?lay',
      '(low|high|three-quarter|side) angle',
      'angle',
      'framing',
      'framed',
      'composition',
      'copy ?space',
      'negative space',
      'room for',
      'space for',
      'leave (room|space)',
      'headline',
      'tagline',
      'mood(y)?',
      'aesthetic',
      'vibe',
      'render(ed)?',
      'styled',
      'styling',
      'in the style of',
      'hero (image|shot|banner)',
      'banner',
      'layout',
      'crop(ped)?',
      'cent(er|re)d',
      'for (the|our|a|an) ([a-z]+ )?(launch|campaign|site|website|homepage|landing page|feed|ad|post|story|banner)',
    ].join('|') +
    ')\\b',
  'i',
);

/** "Create an image of …", "Product shot for …": an instruction in front of the product. */
const LEAD_IN =
  /^(please\s+)?((create|make|design|generate|render|draw|produce|show)\s+(me\s+)?)?(an?\s+|the\s+)?((product|hero|lifestyle|studio)\s+)?(image|photo|picture|shot|visual|ad|advert|illustration|render)\s+(of|for|showing|featuring|with)\s+/i;
const IMPERATIVE = /^(please\s+)?(create|make|design|generate|render|draw|produce|show)\s+(me\s+)?/i;

/** Words a cut line must not end on. */
const DANGLING = /\s+(a|an|the|and|or|but|with|for|of|to|in|on|at|by|from|that|which|who|its|your|our|their|so|as)$/i;

function capitalise(s: string): string {
  return s.length === 0 ? s : s[0]!.toUpperCase() + s.slice(1);
}

const CONNECTIVE =
  /\s(a|an|the|and|or|but|with|for|of|to|in|on|at|by|from|that|which|who|its|your|our|their|so|as)\s/gi;

/**
 * Cuts `s` to fit `max` characters: before the phrase the limit would break ("…dripper glazed", not
 * "…dripper glazed in deep") when that keeps most of the line, else at a word; never on a connective.
 */
function cutAtWord(s: string, max: number): string {
  if (s.length <= max) return s;
  let cut = s.slice(0, max + 1);
  const space = cut.lastIndexOf(' ');
  cut = space > 0 ? cut.slice(0, space) : s.slice(0, max);
  const phrase = [...`${cut} `.matchAll(CONNECTIVE)].at(-1)?.index;
  if (phrase !== undefined && phrase >= max * 0.5) cut = cut.slice(0, phrase);
  while (DANGLING.test(cut)) cut = cut.replace(DANGLING, '');
  return cut;
}

/**
 * A short line about the product, taken from a brief: its first sentence's leading clauses up to the
 * first one that directs the picture (lighting, framing, room for a headline…), at most
 * TAGLINE_MAX_CHARS at a word boundary, ending with a full stop. Empty when the brief is all art
 * direction: no tagline is better than an instruction printed on the image.
 */
export function taglineFrom(brief: string): string {
  const first = brief.trim().split(/(?<=[.!?])\s+/)[0] ?? '';
  const sentence = first.replace(/[.!?]+$/, '').trim();
  // Clause boundaries: commas, semicolons, colons, dashes set off by spaces, brackets.
  const clauses = sentence
    .split(/\s*[,;:()]\s*|\s+[—–-]\s+/)
    .map((c) => c.trim())
    .filter((c) => c !== '');
  const kept: string[] = [];
  for (const raw of clauses) {
    const clause = kept.length === 0 ? raw.replace(LEAD_IN, '') : raw;
    if (ART_DIRECTION.test(clause) || (kept.length === 0 && IMPERATIVE.test(clause))) {
      if (kept.length > 0) break;
      continue; // an art-direction opening ("Soft light, …"): the product comes later
    }
    const next = [...kept, clause].join(', ');
    if (kept.length > 0 && next.length > TAGLINE_MAX_CHARS) break;
    kept.push(clause);
  }
  if (kept.length === 0) return '';
  const line = cutAtWord(kept.join(', '), TAGLINE_MAX_CHARS).replace(/[\s,;:]+$/, '');
  return line === '' ? '' : `${capitalise(line)}.`;
}
