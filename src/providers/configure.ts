// The providers a server uses, from its configuration: the built-in renderer always, an
// OpenAI-compatible API when a tool is given to it. Checked at start-up, so a server never starts
// with a tool it cannot serve or a key it does not have.
import type { Scene } from '../compose/scene.js';
import { UsageError, type ProvidersConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { GenerationTool } from '../tool.js';
import { createBuiltinProvider, type RenderedImage } from './builtin.js';
import { providerSet, type Provider, type ProviderSet } from './index.js';
import { createOpenAiProvider } from './openai.js';

export function configureProviders(
  config: ProvidersConfig,
  tools: readonly GenerationTool[],
  render: (scene: Scene) => Promise<RenderedImage>,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): ProviderSet {
  const names = tools.map((t) => t.name);
  for (const tool of config.perTool.keys()) {
    if (!names.includes(tool)) throw new UsageError(`--provider-for names no tool "${tool}"; the tools are ${names.join(', ')}`);
  }
  const byName = new Map<string, Provider>([['builtin', createBuiltinProvider(render)]]);
  if (config.default === 'openai' || [...config.perTool.values()].includes('openai')) {
    const apiKey = env[config.openai.keyEnv];
    if (apiKey === undefined || apiKey.trim() === '') {
      throw new UsageError(`the openai provider needs its API key in the environment variable ${config.openai.keyEnv}, which is not set`);
    }
    byName.set('openai', createOpenAiProvider({ baseUrl: config.openai.url, model: config.openai.model, apiKey: apiKey.trim(), sizes: config.openai.sizes, timeoutMs: config.openai.timeoutMs, log }));
  }
  return providerSet(byName, config.default, config.perTool);
}
