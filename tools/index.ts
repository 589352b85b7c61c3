// The generation tool catalogue, in the order the server lists them. Adding a tool is adding a file here.
import type { GenerationTool } from '../src/tool.js';
import productShot from './product_shot.js';
import socialCard from './social_card.js';

export const catalogue: GenerationTool[] = [productShot, socialCard];
