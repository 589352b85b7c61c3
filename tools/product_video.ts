// create_product_video: a short clip that starts from a product shot and moves as a brief says.
// Only a job provider (a queue API such as Replicate or fal, declared in a definition file) makes it:
// the server lists this tool only where one is configured for it, and nothing here fakes a video.
import { z } from 'zod';
import { commonFields, type JobPlan, type JobTool } from '../src/tool.js';

export const VIDEO_SIZES = {
  '16:9': { width: 1280, height: 720 },
  '9:16': { width: 720, height: 1280 },
  '1:1': { width: 960, height: 960 },
} as const;
type Aspect = keyof typeof VIDEO_SIZES;

const input = z.object({
  brief: z
    .string()
    .trim()
    .min(1)
    .max(500)
    .describe(
      'What happens in the clip: the motion, the camera and the mood, e.g. "the bottle turns slowly on a wet stone ledge, ' +
        'morning light, the camera pushes in". The product shot is its first frame.',
    ),
  product_name: z.string().trim().min(1).max(80).describe('The product, as the clip must keep it recognisable.'),
  product_shot: z
    .union([
      z.strictObject({
        run_id: z
          .string()
          .min(1)
          .max(100)
          .describe('A create_product_shot run of yours (it may still be running: the clip waits for it).'),
        n: z.number().int().min(0).max(3).default(0).describe('Which of its images, from 0.'),
      }),
      z.url({ protocol: /^https?$/, error: 'must be an http(s) URL of an image the provider can fetch' }),
    ])
    .describe(
      'The still the clip starts from: {"run_id": "...", "n": 0} for an image of a create_product_shot run, or the https URL of an image.',
    ),
  duration_seconds: z
    .union([z.literal(5), z.literal(10)])
    .default(5)
    .describe('Length of the clip: 5 or 10 seconds.'),
  aspect: z
    .enum(Object.keys(VIDEO_SIZES) as [Aspect, ...Aspect[]])
    .default('16:9')
    .describe(
      '"16:9" (1280×720), "9:16" (720×1280) or "1:1" (960×960). A provider that animates the still may keep its aspect instead.',
    ),
  ...commonFields,
});
type Args = z.output<typeof input>;

const name = 'product_video';

const CREDITS_PER_5_SECONDS = 10;

const description =
  'Make a short product video (MP4) from a product shot and a brief: 5 or 10 seconds, 16:9, 9:16 or 1:1. The still ' +
  '(an image of a create_product_shot run, or a URL) is the first frame; the brief says how it moves. The clip is made by ' +
  'a video generation service and takes one to several minutes: the call answers at once, and poll_run follows it. The ' +
  'brand rubric scores still images: the video is scored by its poster frame where the service gives one, else the result ' +
  'says it was not scored, and why. ' +
  `Cost: ${CREDITS_PER_5_SECONDS} credits per 5 seconds of video.`;

function job(args: Args, seed: number): JobPlan {
  const { width, height } = VIDEO_SIZES[args.aspect];
  const prompt =
    `${args.brief} The product is ${args.product_name}: keep it recognisable throughout, its shape, label and colours as in the first frame. ` +
    `No added text or logos. Keep the setting in the brand's colours (${args.brand_kit.palette.map((c) => c.hex).join(', ')}) where the scene allows.`;
  const shot = args.product_shot;
  return {
    fields: {
      prompt,
      product_name: args.product_name,
      duration_seconds: args.duration_seconds,
      aspect: args.aspect,
      width,
      height,
      seed,
      ...(typeof shot === 'string' ? { image: shot } : {}),
    },
    runImages: typeof shot === 'string' ? {} : { image: { run_id: shot.run_id, n: shot.n } },
    target: { width, height, label: `aspect "${args.aspect}"` },
  };
}

const productVideo: JobTool<typeof input> = {
  kind: 'job',
  name,
  title: 'Product video',
  description,
  input,
  cost: (args) => CREDITS_PER_5_SECONDS * (args.duration_seconds / 5),
  jobFields: ['prompt', 'image', 'product_name', 'duration_seconds', 'aspect', 'width', 'height', 'seed'],
  job,
  brandKit: (args) => args.brand_kit,
};
export default productVideo;
