// Worker thread of the built-in provider: renders and scores one scene per message.
import { parentPort } from 'node:worker_threads';
import { renderAndScore, type RenderReply, type RenderRequest } from './index.js';

parentPort?.on('message', (request: RenderRequest) => {
  let reply: RenderReply;
  try {
    reply = { id: request.id, ok: true, rendered: renderAndScore(request.scene, request.brand) };
  } catch (err) {
    reply = { id: request.id, ok: false, message: err instanceof Error ? err.message : String(err) };
  }
  parentPort?.postMessage(reply);
});
