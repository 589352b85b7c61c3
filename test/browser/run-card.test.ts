// The run card in headless Chromium, inside a minimal MCP Apps host (the real AppBridge, see
// app-host.html) whose tools/call and resources/read go to the built CLI over stdio. It must render,
// follow a run to done live, show each image with its score and checks, and its buttons must call the
// right tools with the right keys: Reattach the same key (the same run, no new charge), Regenerate a
// new one (a new run, billed). Screenshots land in runledger-out/screenshots for a person to look at.
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { Browser, FrameLocator, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUN_CARD_MIME, RUN_CARD_URI } from '../../src/mcp/run-card.js';
import { chromiumAvailable, launch, SCREENSHOTS, serveHostPage } from '../helpers/browser.js';
import { callTool, PRODUCT_SHOT, startStdio, tempDb, type StdioServer } from '../helpers/mcp.js';

const HOST_HTML = readFileSync(new URL('./app-host.html', import.meta.url), 'utf8');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

interface HostCall {
  method: string;
  name?: string;
  arguments?: Record<string, unknown>;
  uri?: string;
}

describe.skipIf(!chromiumAvailable())('the run card in an MCP Apps host', () => {
  let browser: Browser;
  let server: StdioServer;
  let host: Awaited<ReturnType<typeof serveHostPage>>;
  let html: string;

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    // Slow phases, so the card is seen mid-run.
    [browser, server, host] = await Promise.all([
      launch(),
      startStdio(tempDb(), ['--phase-delay-ms', '2000']),
      serveHostPage(HOST_HTML),
    ]);
    const read = await server.client.readResource({ uri: RUN_CARD_URI });
    const card = read.contents[0] as { mimeType: string; text: string };
    expect(card.mimeType).toBe(RUN_CARD_MIME);
    html = card.text;
  });
  afterAll(async () => {
    await Promise.all([browser?.close(), server?.close(), host?.close()]);
  });

  async function openHost(
    toolName: string,
    toolInput: Record<string, unknown>,
    toolResult: CallToolResult,
    theme = 'light',
  ): Promise<{ page: Page; card: FrameLocator }> {
    const page = await browser.newPage({ viewport: { width: 720, height: 1100 } });
    page.on('pageerror', (err) => console.error('host page error:', err));
    await page.exposeFunction('hostCallTool', (params: { name: string; arguments: Record<string, unknown> }) =>
      server.client.callTool(params),
    );
    await page.exposeFunction('hostReadResource', (params: { uri: string }) => server.client.readResource(params));
    await page.goto(host.url);
    await page.waitForFunction(() => (globalThis as unknown as { hostReady?: boolean }).hostReady === true);
    await page.evaluate((args) => (globalThis as unknown as { openCard(a: unknown): Promise<void> }).openCard(args), {
      html,
      toolName,
      toolInput,
      toolResult,
      theme,
    });
    return { page, card: page.frameLocator('iframe') };
  }
  const callsOf = (page: Page) => page.evaluate(() => (globalThis as unknown as { calls: HostCall[] }).calls);
  const usage = async () =>
    (await server.client.callTool({ name: 'get_usage', arguments: {} })).structuredContent as {
      runs: number;
      charges: number;
    };

  it('links the create tools and poll_run to the card, which the server lists and serves', async () => {
    const { tools } = await server.client.listTools();
    for (const name of ['create_product_shot', 'create_social_card', 'poll_run']) {
      expect(tools.find((t) => t.name === name)!._meta).toMatchObject({ ui: { resourceUri: RUN_CARD_URI } });
    }
    expect(tools.find((t) => t.name === 'list_runs')!._meta).toBeUndefined();
    const { resources } = await server.client.listResources();
    expect(resources[0]).toMatchObject({ uri: RUN_CARD_URI, mimeType: RUN_CARD_MIME });
    expect(html).toMatch(/^<!DOCTYPE html>/);
    expect(html).not.toMatch(/<script[^>]+src=|https?:\/\//);
  });

  it('follows a run to done, shows each image with its score and checks, reattaches with the same key and regenerates with a new one', async () => {
    const key = randomUUID();
    const input = { ...PRODUCT_SHOT, idempotency_key: key };
    const created = await callTool(server.client, 'create_product_shot', input);
    const runId = created.run.run_id;
    const before = await usage();
    const { page, card } = await openHost('create_product_shot', input, created.result);

    // Live: the phase the card shows moves on without anyone calling the tool again.
    await card
      .locator('#phase')
      .filter({ hasText: /^(composing|rendering)$/ })
      .waitFor({ timeout: 30_000 });
    await expect.poll(() => card.locator('#run-id').getAttribute('title')).toBe(runId);
    await page.screenshot({ path: `${SCREENSHOTS}run-card-running.png`, fullPage: true });

    await card.locator('#phase', { hasText: /^done$/ }).waitFor({ timeout: 60_000 });
    await expect
      .poll(() =>
        card
          .locator('figure img')
          .evaluateAll((imgs) => imgs.map((i) => (i as unknown as { naturalWidth: number }).naturalWidth)),
      )
      .toEqual([1080, 1080]);
    for (const phase of ['queued', 'composing', 'rendering', 'done']) {
      await expect.poll(() => card.locator(`li[data-phase="${phase}"]`).getAttribute('class')).toMatch(/reached/);
    }
    const figures = card.locator('figure');
    expect(await figures.count()).toBe(2);
    for (let i = 0; i < 2; i++) {
      const figure = figures.nth(i);
      expect(await figure.locator('.score').textContent()).toMatch(/^brand score \d\.\d\d$/);
      const checks = await figure
        .locator('li[data-check]')
        .evaluateAll((items) => items.map((li) => li.getAttribute('data-check')));
      expect(checks).toEqual([
        'size',
        'safe_margin',
        'logo_present',
        'banned_phrases',
        'text_contrast',
        'text_fit',
        'palette_coverage',
      ]);
    }
    expect(await card.locator('#charge').textContent()).toBe('8 credits, billed once');
    await page.screenshot({ path: `${SCREENSHOTS}run-card-done.png`, fullPage: true });

    // What the card asked of the host so far: polls of this run, and its two images.
    const followed = await callsOf(page);
    const polls = followed.filter((c) => c.name === 'poll_run');
    expect(polls.length).toBeGreaterThan(0);
    for (const poll of polls) expect(poll.arguments).toMatchObject({ run_id: runId });
    expect(followed.filter((c) => c.method === 'resources/read').map((c) => c.uri)).toEqual([
      `runs://${runId}/assets/0`,
      `runs://${runId}/assets/1`,
    ]);
    expect(followed.some((c) => c.name?.startsWith('create_'))).toBe(false);

    // Reattach: the same tool, the same key and arguments; the same run comes back, replayed, unbilled.
    await card.locator('#reattach').click();
    await card.locator('#note', { hasText: 'same run' }).waitFor();
    const reattach = (await callsOf(page)).filter((c) => c.name === 'create_product_shot');
    expect(reattach).toHaveLength(1);
    expect(reattach[0]!.arguments).toMatchObject({ ...PRODUCT_SHOT, idempotency_key: key });
    expect(reattach[0]!.arguments).not.toHaveProperty('seed');
    expect(await card.locator('#run-id').getAttribute('title')).toBe(runId);
    expect(await card.locator('#replayed').textContent()).toBe('replayed');
    expect(await usage()).toMatchObject({ runs: before.runs, charges: before.charges + 1 });

    // Regenerate asks first, saying it is a new, billed run; then a new key and seed make a new run.
    await card.locator('#regenerate').click();
    expect(await card.locator('#regenerate-confirm').textContent()).toBe('Start a new run: 8 credits');
    expect(await card.locator('#explain').textContent()).toContain('a new run, billed again (8 credits)');
    await page.screenshot({ path: `${SCREENSHOTS}run-card-regenerate-confirm.png`, fullPage: true });
    await card.locator('#regenerate-confirm').click();
    await card.locator('#note', { hasText: 'Regenerated' }).waitFor();
    const creates = (await callsOf(page)).filter((c) => c.name === 'create_product_shot');
    expect(creates).toHaveLength(2);
    const regenerated = creates[1]!.arguments!;
    expect(regenerated.idempotency_key).toMatch(UUID);
    expect(regenerated.idempotency_key).not.toBe(key);
    expect(regenerated).toMatchObject({ ...PRODUCT_SHOT, seed: expect.any(Number) });
    const newRunId = await card.locator('#run-id').getAttribute('title');
    expect(newRunId).not.toBe(runId);
    await card.locator('#phase', { hasText: /^done$/ }).waitFor({ timeout: 60_000 });
    await expect.poll(() => card.locator('figure img').count()).toBe(2);
    // The new run is followed by its own id, and billed when done: one more run, one more charge.
    expect((await callsOf(page)).filter((c) => c.name === 'poll_run').at(-1)!.arguments).toMatchObject({
      run_id: newRunId,
    });
    expect(await usage()).toMatchObject({ runs: before.runs + 1, charges: before.charges + 2 });
    await page.screenshot({ path: `${SCREENSHOTS}run-card-regenerated.png`, fullPage: true });
    await page.close();
  });

  it("opened from poll_run, shows a finished run at once, a failed check with its fix, and reattaches with the run's own key", async () => {
    const key = randomUUID();
    // Copy too long for its box: the text_fit check fails, and the card shows how.
    const args = {
      brief: 'A flask.',
      product_name: 'Hyperconductive Thermoregulating Ultralightweight Expedition Flask',
      tagline: 'Keeps coffee hot for a day and water ice cold for two, on every trail, in every season.',
    };
    const created = await callTool(server.client, 'create_product_shot', {
      ...args,
      idempotency_key: key,
      wait_seconds: 50,
    });
    expect(created.run.phase).toBe('done');
    const polled = await callTool(server.client, 'poll_run', { run_id: created.run.run_id });
    const { page, card } = await openHost('poll_run', { run_id: created.run.run_id }, polled.result, 'dark');
    await card.locator('#phase', { hasText: /^done$/ }).waitFor();
    await expect
      .poll(() =>
        card
          .locator('figure img')
          .evaluateAll((imgs) => imgs.map((i) => (i as unknown as { naturalWidth: number }).naturalWidth)),
      )
      .toEqual([1080]);
    expect(await card.locator('.score').textContent()).toBe('brand score 0.86');
    const failed = card.locator('li.fail');
    expect(await failed.getAttribute('data-check')).toBe('text_fit');
    expect(await failed.locator('.fix').textContent()).toMatch(/^Fix: Shorten the (headline|body)/);
    await page.screenshot({ path: `${SCREENSHOTS}run-card-poll-dark.png`, fullPage: true });
    // A finished run is not polled again.
    expect((await callsOf(page)).filter((c) => c.name === 'poll_run')).toEqual([]);

    await card.locator('#reattach').click();
    await card.locator('#note', { hasText: 'same run' }).waitFor();
    const [reattach] = (await callsOf(page)).filter((c) => c.method === 'tools/call');
    expect(reattach).toMatchObject({ name: 'create_product_shot', arguments: { ...args, idempotency_key: key } });
    await page.close();
  });

  it('says what went wrong when the tool answered with an error, and offers no action on it', async () => {
    const refused = await callTool(server.client, 'create_social_card', {
      headline: '',
      idempotency_key: randomUUID(),
    });
    expect(refused.result.isError).toBe(true);
    const { page, card } = await openHost('create_social_card', { headline: '' }, refused.result);
    await card.locator('#waiting', { hasText: /^validation_failed: / }).waitFor();
    expect(await card.locator('button').count()).toBe(0);
    expect(await callsOf(page)).toEqual([]);
    await page.close();
  });
});
