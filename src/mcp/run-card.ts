// The run card: an MCP Apps view (a ui:// resource) that hosts such as Claude, ChatGPT, VS Code and Goose
// show beside a create_* or poll_run result. It follows the run's phases live, shows each image with its
// brand score and every check, and offers Reattach (the same key: the same run, never billed twice) and
// Regenerate (a new key: a new run, billed again, which it says). Hosts without MCP Apps ignore the
// link and read the tool result as before.
import { runCardHtml } from './run-card-html.js';

export const RUN_CARD_URI = 'ui://runledger/run-card.html';
/** The MCP Apps profile of HTML (SEP-1865). */
export const RUN_CARD_MIME = 'text/html;profile=mcp-app';

/**
 * What a tool definition carries to name the card. `ui/resourceUri` is the flat key hosts read before
 * the 2026-01-26 spec; it is deprecated, and kept while hosts still look for it.
 */
export const RUN_CARD_TOOL_META = { ui: { resourceUri: RUN_CARD_URI }, 'ui/resourceUri': RUN_CARD_URI } as const;

/**
 * Where a run result names the request behind the run (the create tool, its key and normalised
 * arguments), for the card's Reattach and Regenerate; _meta, so a model never reads it.
 */
export const RUN_REQUEST_META = 'io.runledger/run';

export const runCardListing = {
  uri: RUN_CARD_URI,
  name: 'run-card',
  title: 'Run card',
  description: 'Follows a run live: phases, images with their brand score and checks, Reattach and Regenerate.',
  mimeType: RUN_CARD_MIME,
};

let html: string | undefined;

/** The card as resources/read answers it. It needs no network: the default (empty) CSP suits it. */
export function readRunCard() {
  html ??= runCardHtml();
  return {
    contents: [{ uri: RUN_CARD_URI, mimeType: RUN_CARD_MIME, text: html, _meta: { ui: { prefersBorder: true } } }],
  };
}
