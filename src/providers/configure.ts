// The providers a server uses, from its configuration: the built-in renderer always, an
// OpenAI-compatible API when a tool is given to it, and job providers from definition files. Checked
// at start-up, so a server never starts with a tool it cannot serve, a key it does not have, or a
// definition that asks a tool for what it does not give.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Scene } from '../compose/scene.js';
import { UsageError } from '../command-line.js';
import type { JobsConfig, ProvidersConfig } from '../config-sections.js';
import type { Logger } from '../log.js';
import { jobFieldsOf, type GenerationTool } from '../tool.js';
import { createBuiltinProvider, type RenderedImage } from './builtin.js';
import { DefinitionError, loadDefinition } from './definition.js';
import { providerSet, type AnyProvider, type ProviderSet } from './index.js';
import { createJobProvider, missingFields, type JobProvider } from './jobs.js';
import { createOpenAiProvider } from './openai.js';

/** The definitions shipped in the package's providers/ directory, by name. */
export const SHIPPED_DEFINITIONS = ['replicate', 'fal'] as const;

/** A shipped definition's file: providers/<name>.json beside src/ (or dist/src/, once built). */
export function shippedDefinition(name: string): string | null {
  if (!(SHIPPED_DEFINITIONS as readonly string[]).includes(name)) return null;
  for (const up of ['../../providers/', '../../../providers/']) {
    const file = fileURLToPath(new URL(`${up}${name}.json`, import.meta.url));
    if (existsSync(file)) return file;
  }
  return null;
}

/** A --provider-file value as a path: a shipped definition's name, or the path itself. */
export function definitionFile(value: string): string {
  return /^[a-z][a-z0-9-]*$/.test(value) ? (shippedDefinition(value) ?? value) : value;
}

export interface ConfiguredProviders {
  providers: ProviderSet;
  /** The tools this server serves: every image tool, and a job tool only where a job provider is set for it. */
  served: GenerationTool[];
}

export function configureProviders(
  config: ProvidersConfig,
  tools: readonly GenerationTool[],
  render: (scene: Scene) => Promise<RenderedImage>,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
  jobs: Pick<JobsConfig, 'files' | 'publicUrl'> = { files: [], publicUrl: null },
): ConfiguredProviders {
  const names = tools.map((t) => t.name);
  for (const tool of config.perTool.keys()) {
    if (!names.includes(tool))
      throw new UsageError(`--provider-for names no tool "${tool}"; the tools are ${names.join(', ')}`);
  }
  const byName = new Map<string, AnyProvider>([['builtin', createBuiltinProvider(render)]]);
  const chosen = new Set([config.default, ...config.perTool.values()]);
  if (chosen.has('openai')) {
    const apiKey = env[config.openai.keyEnv];
    if (apiKey === undefined || apiKey.trim() === '') {
      throw new UsageError(
        `the openai provider needs its API key in the environment variable ${config.openai.keyEnv}, which is not set`,
      );
    }
    byName.set(
      'openai',
      createOpenAiProvider({
        baseUrl: config.openai.url,
        model: config.openai.model,
        apiKey: apiKey.trim(),
        sizes: config.openai.sizes,
        timeoutMs: config.openai.timeoutMs,
        log,
      }),
    );
  }
  for (const value of jobs.files) {
    const file = definitionFile(value);
    let def;
    try {
      def = loadDefinition(file);
    } catch (err) {
      if (err instanceof DefinitionError)
        throw new UsageError(`--provider-file ${err.message} (runledger providers check FILE says more)`);
      throw err;
    }
    if (byName.has(def.name))
      throw new UsageError(`--provider-file ${file}: a provider named "${def.name}" is defined already`);
    const key = env[def.auth.env];
    if (chosen.has(def.name) && (key === undefined || key.trim() === '')) {
      throw new UsageError(
        `the ${def.name} provider (${file}) needs its API key in the environment variable ${def.auth.env}, which is not set`,
      );
    }
    const signing = def.webhook?.signing;
    if (
      chosen.has(def.name) &&
      jobs.publicUrl !== null &&
      signing?.scheme === 'standard-webhooks' &&
      def.submit.webhook !== undefined &&
      !env[signing.secret_env]?.trim()
    ) {
      throw new UsageError(
        `the ${def.name} provider's webhooks are signed with the secret in ${signing.secret_env}, which is not set: set it, or leave out --public-url to poll its jobs`,
      );
    }
    byName.set(def.name, createJobProvider(def, env));
  }
  for (const name of chosen) {
    if (!byName.has(name)) {
      throw new UsageError(
        `no provider is named "${name}": the providers are ${[...byName.keys()].join(', ')}${jobs.files.length === 0 ? ' (a job provider needs --provider-file)' : ''}`,
      );
    }
  }

  const providerOf = (tool: GenerationTool) => byName.get(config.perTool.get(tool.name) ?? config.default)!;
  const served: GenerationTool[] = [];
  for (const tool of tools) {
    const provider = providerOf(tool);
    if (provider.kind === 'job') {
      const missing = missingFields(provider, jobFieldsOf(tool));
      if (missing.length > 0) {
        if (!config.perTool.has(tool.name) && tool.kind !== 'job') {
          // The default provider cannot serve this tool: it keeps the built-in renderer.
          throw new UsageError(
            `--provider ${provider.id} cannot serve ${tool.name}: its definition uses ${missing.map((f) => `{request.${f}}`).join(', ')}, which ${tool.name} does not give ` +
              `(it gives ${jobFieldsOf(tool).join(', ')}); choose it per tool with --provider-for instead`,
          );
        }
        throw new UsageError(
          `the ${provider.id} provider cannot serve ${tool.name}: its definition uses ${missing.map((f) => `{request.${f}}`).join(', ')}, which ${tool.name} does not give (it gives ${jobFieldsOf(tool).join(', ')})`,
        );
      }
    } else if (tool.kind === 'job') {
      log.info(
        `create_${tool.name} is not served: it needs a job provider (e.g. --provider-file replicate --provider-for ${tool.name}=replicate, with REPLICATE_API_TOKEN set)`,
      );
      continue;
    }
    served.push(tool);
  }
  const set = providerSet(byName, config.default, config.perTool);
  for (const provider of set.jobProviders().filter((p) => chosen.has(p.id))) {
    describeJobProvider(
      provider,
      jobs.publicUrl,
      log,
      served.filter((t) => providerOf(t) === provider).map((t) => `create_${t.name}`),
    );
  }
  return { providers: set, served };
}

/** The start-up note for a job provider: which tools it serves, and whether webhooks or polling follow its jobs. */
function describeJobProvider(provider: JobProvider, publicUrl: string | null, log: Logger, tools: string[]): void {
  const fields = { provider: provider.id, model: provider.model, tools };
  if (provider.webhooks === null || !provider.asksForWebhooks) {
    log.info(`job provider ${provider.id}: its jobs are polled (its definition has no signed webhooks)`, fields);
  } else if (publicUrl === null) {
    log.info(
      `job provider ${provider.id}: no --public-url, so its jobs are polled; webhooks would only speed them up`,
      fields,
    );
  } else {
    log.info(
      `job provider ${provider.id}: webhooks to ${publicUrl}/webhooks/${provider.id}, and polling as the fallback`,
      fields,
    );
  }
}
