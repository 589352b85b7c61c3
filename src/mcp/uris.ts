// The runs:// codec: the one place that writes and reads run and asset URIs.

export const runUri = (runId: string): string => `runs://${runId}`;
export const assetUri = (runId: string, n: number): string => `runs://${runId}/assets/${n}`;

export function parseRunUri(uri: string): { runId: string; n?: number } | null {
  const match = /^runs:\/\/([^/]+)(?:\/assets\/(\d+))?$/.exec(uri);
  if (match === null) return null;
  return match[2] === undefined ? { runId: match[1]! } : { runId: match[1]!, n: Number(match[2]) };
}
