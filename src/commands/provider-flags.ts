// Flags of the providers that make the images and videos: the built-in renderer or an OpenAI-compatible
// API, and job providers (queue APIs such as Replicate or fal) declared in definition files.
import { DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_ORPHAN_SEARCH_MS } from '../engine/defaults.js';
import type { Flag } from './flag.js';

export const PROVIDERS = ['builtin', 'openai'] as const;

export const IMAGE_PROVIDER_FLAGS = {
  provider: {
    type: 'string',
    arg: 'NAME',
    help: `${PROVIDERS.join(' or ')} (or a job provider a --provider-file defines), for every tool`,
    env: 'RUNLEDGER_PROVIDER',
    default: 'builtin',
  },
  'provider-for': {
    type: 'string',
    multiple: true,
    arg: 'TOOL=NAME',
    help: "this tool's provider, overriding --provider (repeatable), e.g. product_shot=openai",
  },
  'provider-url': {
    type: 'string',
    arg: 'URL',
    help: 'OpenAI-compatible API base',
    env: 'RUNLEDGER_PROVIDER_URL',
    default: 'https://api.openai.com/v1',
  },
  'provider-model': {
    type: 'string',
    arg: 'NAME',
    help: 'image model',
    env: 'RUNLEDGER_PROVIDER_MODEL',
    default: 'gpt-image-1',
  },
  'provider-key-env': {
    type: 'string',
    arg: 'VAR',
    help: 'the environment variable holding the API key; the key itself never passes through flags',
    default: 'OPENAI_API_KEY',
  },
  'provider-timeout-ms': {
    type: 'string',
    arg: 'MS',
    help: 'cut-off for one provider call',
    range: [1000, 600_000],
    default: 120_000,
  },
  'provider-sizes': {
    type: 'string',
    arg: 'LIST',
    help: 'sizes the model accepts, e.g. 1024x1024,1536x1024, or "any" to send the tool\'s exact size',
    default: '1024x1024,1536x1024,1024x1536',
  },
} as const satisfies Record<string, Flag>;

export const JOB_PROVIDER_FLAGS = {
  'provider-file': {
    type: 'string',
    multiple: true,
    arg: 'FILE',
    help: 'a job provider definition (JSON), or the name of a shipped one: replicate, fal (repeatable); its name then goes in --provider or --provider-for, e.g. --provider-file replicate --provider-for product_video=replicate',
  },
  'public-url': {
    type: 'string',
    arg: 'URL',
    help: 'the public base URL of this server (--http), where providers send webhooks (URL/webhooks/<name>); without it jobs are polled, which always works',
    env: 'RUNLEDGER_PUBLIC_URL',
  },
  'orphan-search-ms': {
    type: 'string',
    arg: 'MS',
    help: "how long a run whose submit's answer a crash lost looks for its job (webhooks, the list endpoint) before ending outcome_unknown, never submitting again",
    range: [1000, 86_400_000],
    default: DEFAULT_ORPHAN_SEARCH_MS,
  },
  'max-output-bytes': {
    type: 'string',
    arg: 'N',
    help: 'the largest output (image or video) fetched from a job provider and stored',
    range: [1024, 1024 * 1024 * 1024],
    default: DEFAULT_MAX_OUTPUT_BYTES,
  },
} as const satisfies Record<string, Flag>;
