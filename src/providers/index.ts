// A provider turns a composed scene into image bytes. The engine passes the run's id (plus the variant)
// as the provider's own idempotency key, so a resumed run never causes a second billable upstream call.
import { GENERATOR_VERSION, renderScene, type RenderedImage } from './builtin.js';
import type { Scene } from './scene.js';

export interface Provider {
  id: string;
  version: string;
  render(scene: Scene, opts: { idempotencyKey: string }): Promise<RenderedImage>;
}

/** Offline and deterministic: the key is not needed, since the same scene always gives the same bytes. */
export const builtinProvider: Provider = {
  id: 'builtin',
  version: GENERATOR_VERSION,
  render: async (scene) => renderScene(scene),
};

export type { RenderedImage };
