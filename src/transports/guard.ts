// Every message a transport delivers passes here first, for runledger and for runledger proxy alike:
// a message nested deeper than any tool may take is answered here, before a handler (or the proxy's
// fingerprint and its upstream's JSON.stringify, which recurse) can overflow the stack on it.
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  ErrorCode as RpcErrorCode,
  isJSONRPCRequest,
  type JSONRPCMessage,
  type JSONRPCRequest,
} from '@modelcontextprotocol/sdk/types.js';
import { ValidationFailedError } from '../errors.js';
import { MAX_JSON_DEPTH, nestedPast } from '../json-depth.js';
import { errorResult } from '../mcp/tool.js';

/** A tool's arguments sit two levels inside the message (message → params → arguments). */
const MESSAGE_DEPTH = MAX_JSON_DEPTH + 2;

/** Call after `server.connect(transport)`, which installs the handler this wraps. */
export function refuseDeepMessages(transport: Transport): void {
  const deliver = transport.onmessage;
  transport.onmessage = (message, extra) => {
    const path = nestedPast(message, MESSAGE_DEPTH);
    if (path === null) return deliver?.(message, extra);
    // A notification or a response has no one to answer; unread, it does nothing.
    if (!isJSONRPCRequest(message)) return;
    void transport.send(refusal(message, path), { relatedRequestId: message.id }).catch(() => undefined);
  };
}

function refusal(request: JSONRPCRequest, path: (string | number)[]): JSONRPCMessage {
  const rule = `must not nest arrays and objects more than ${MAX_JSON_DEPTH} levels deep`;
  // A tool's bad argument is the typed validation_failed result every surface gives for one (a
  // task-augmented call must answer with a task, so it gets the JSON-RPC error below).
  if (request.method === 'tools/call' && path[1] === 'arguments' && request.params?.task === undefined) {
    const result = errorResult(new ValidationFailedError([{ field: String(path[2]), rule }]));
    return { jsonrpc: '2.0', id: request.id, result };
  }
  return {
    jsonrpc: '2.0',
    id: request.id,
    error: { code: RpcErrorCode.InvalidParams, message: `Invalid params: ${path.slice(1, 3).join('.')} ${rule}` },
  };
}
