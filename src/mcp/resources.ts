// Runs as MCP resources: runs://{run_id} (the run as JSON) and runs://{run_id}/assets/{n} (the bytes);
// and the run card, the MCP Apps view of a run (ui://runledger/run-card.html).
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  ErrorCode as RpcErrorCode,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  McpError,
  ReadResourceRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { asRunledgerError, ErrorCode } from '../errors.js';
import type { RunService } from '../runs.js';
import { readRunCard, RUN_CARD_URI, runCardListing } from './run-card.js';
import type { Extra } from './tool.js';
import { parseRunUri, runUri } from './uris.js';
import { runView } from './views.js';

/** JSON-RPC code for an unknown resource (MCP spec). */
const RESOURCE_NOT_FOUND = -32002;

export function registerRunResources(server: Server, runs: RunService, tenantOf: (extra: Extra) => string): void {
  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
    resourceTemplates: [
      { uriTemplate: 'runs://{run_id}', name: 'run', title: 'A run as JSON', mimeType: 'application/json' },
      {
        uriTemplate: 'runs://{run_id}/assets/{n}',
        name: 'run-asset',
        title: 'An image or video a run produced (read gives its own MIME type)',
      },
    ],
  }));

  server.setRequestHandler(ListResourcesRequestSchema, async (_request, extra) => {
    const page = await runs.list(tenantOf(extra), { limit: 50 }).catch((e: unknown) => {
      throw new McpError(RpcErrorCode.InternalError, asRunledgerError(e).message);
    });
    return {
      resources: [
        runCardListing,
        ...page.runs.map((r) => ({
          uri: runUri(r.id),
          name: r.id,
          title: `${r.tool} run (${r.phase})`,
          mimeType: 'application/json',
        })),
      ],
    };
  });

  server.setRequestHandler(ReadResourceRequestSchema, async (request, extra) => {
    const uri = request.params.uri;
    if (uri === RUN_CARD_URI) return readRunCard();
    const target = parseRunUri(uri);
    if (target === null) {
      throw new McpError(
        RESOURCE_NOT_FOUND,
        `Resource not found: ${uri}. Run URIs look like runs://{run_id} or runs://{run_id}/assets/{n}.`,
      );
    }
    const tenant = tenantOf(extra);
    try {
      if (target.n === undefined) {
        const view = runView(await runs.get(tenant, target.runId), false);
        return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify(view, null, 2) }] };
      }
      const asset = await runs.asset(tenant, target.runId, target.n);
      return { contents: [{ uri, mimeType: asset.mime, blob: asset.bytes.toString('base64') }] };
    } catch (e) {
      const err = asRunledgerError(e);
      throw new McpError(
        err.code === ErrorCode.notFound ? RESOURCE_NOT_FOUND : RpcErrorCode.InternalError,
        `${err.message} ${err.fix}`,
        { uri },
      );
    }
  });
}
