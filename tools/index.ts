// The generation tool catalogue, in the order the server lists them. Adding a tool is adding a file here.
// A job tool (product_video) is listed only where a job provider is configured for it (runtime.ts).
import type { GenerationTool } from '../src/tool.js';
import productShot from './product_shot.js';
import productVideo from './product_video.js';
import socialCard from './social_card.js';

export const catalogue: GenerationTool[] = [productShot, socialCard, productVideo];
