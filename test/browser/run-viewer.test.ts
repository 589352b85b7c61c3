// The operators' run viewer on the HTTP server, in headless Chromium and over raw HTTP: per tenant,
// behind the bearer token and the Host/Origin checks; runs with phases, images, scores and charges,
// filtered by tool and phase; one tenant's runs never shown to another.
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { mkdirSync } from 'node:fs';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumAvailable, launch, SCREENSHOTS } from '../helpers/browser.js';
import { connectHttp, killAll, startHttp, type HttpProcess } from '../helpers/http.js';
import { callTool, PRODUCT_SHOT, tempDb } from '../helpers/mcp.js';

const ACME = 'acme-token-0123456789abcdef';
const GLOBEX = 'globex-token-0123456789abcdef';

/** A GET with exactly these headers (fetch will not send a Host of our choosing). */
function raw(
  origin: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const url = new URL(path, origin);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, path: url.pathname + url.search, headers: { host: url.host, ...headers } },
      (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe.skipIf(!chromiumAvailable())('the run viewer', () => {
  let browser: Browser;
  let server: HttpProcess;
  const clients: Client[] = [];
  const acmeRuns: { id: string; tool: string; phase: string }[] = [];
  let globexRun: string;

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    [browser, server] = await Promise.all([
      launch(),
      startHttp(tempDb(), ['--phase-delay-ms', '600'], { RUNLEDGER_TOKENS: `acme:${ACME},globex:${GLOBEX}` }),
    ]);
    const [acme, globex] = await Promise.all([connectHttp(server.url, ACME), connectHttp(server.url, GLOBEX)]);
    clients.push(acme, globex);
    const key = randomUUID();
    const shot = await callTool(acme, 'create_product_shot', {
      ...PRODUCT_SHOT,
      idempotency_key: key,
      wait_seconds: 50,
    });
    await callTool(acme, 'create_product_shot', { ...PRODUCT_SHOT, idempotency_key: key }); // a replay, absorbed
    const card = await callTool(acme, 'create_social_card', {
      headline: 'Free repairs for life',
      body: 'On every piece.',
      idempotency_key: randomUUID(),
      wait_seconds: 50,
    });
    const doomed = await callTool(acme, 'create_social_card', {
      headline: 'Never mind',
      idempotency_key: randomUUID(),
    });
    await callTool(acme, 'cancel_run', { run_id: doomed.run.run_id });
    acmeRuns.push(
      { id: doomed.run.run_id, tool: 'social_card', phase: 'canceled' },
      { id: card.run.run_id, tool: 'social_card', phase: 'done' },
      { id: shot.run.run_id, tool: 'product_shot', phase: 'done' },
    );
    globexRun = (
      await callTool(globex, 'create_social_card', {
        headline: 'Globex only',
        idempotency_key: randomUUID(),
        wait_seconds: 50,
      })
    ).run.run_id;
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await browser?.close();
    await killAll();
  });

  describe('over HTTP', () => {
    it('serves the page (no data in it) with a strict content security policy', async () => {
      const page = await raw(server.origin, '/viewer');
      expect(page.status).toBe(200);
      expect(page.headers['content-security-policy']).toMatch(
        /default-src 'none'; script-src 'self';.*frame-ancestors 'none'/,
      );
      expect(page.body).not.toContain(acmeRuns[0]!.id);
    });

    it('asks for the bearer token before any run, image or total', async () => {
      for (const path of [
        '/viewer/api/runs',
        `/viewer/api/runs/${acmeRuns[2]!.id}`,
        `/viewer/api/runs/${acmeRuns[2]!.id}/assets/0`,
      ]) {
        expect((await raw(server.origin, path)).status).toBe(401);
        expect((await raw(server.origin, path, { authorization: 'Bearer not-a-token-0123456789' })).status).toBe(401);
      }
    });

    it('answers 403 to a Host or Origin the server does not allow, as /mcp does', async () => {
      const auth = { authorization: `Bearer ${ACME}` };
      expect((await raw(server.origin, '/viewer/api/runs', { ...auth, host: 'evil.example:80' })).status).toBe(403);
      expect((await raw(server.origin, '/viewer', { host: 'evil.example:80' })).status).toBe(403);
      expect((await raw(server.origin, '/viewer/api/runs', { ...auth, origin: 'https://evil.example' })).status).toBe(
        403,
      );
      expect((await raw(server.origin, '/viewer/api/runs', { ...auth, origin: server.origin })).status).toBe(200);
    });

    it("lists only the token's tenant's runs, and answers another tenant's run and image as not found", async () => {
      const list = async (token: string, query = '') =>
        JSON.parse(
          (await raw(server.origin, `/viewer/api/runs${query}`, { authorization: `Bearer ${token}` })).body,
        ) as {
          tenant: string;
          runs: { run_id: string; tool: string; phase: string; charged: number; score: number | null }[];
          usage: { runs: number; charges: number; credits: number; replays_absorbed: number };
        };
      const acme = await list(ACME);
      expect(acme.tenant).toBe('acme');
      expect(acme.runs.map((r) => r.run_id)).toEqual(acmeRuns.map((r) => r.id));
      expect(acme.usage).toEqual({
        runs: 3,
        charges: 2,
        credits: 10,
        replays_absorbed: 1,
        tools: ['product_shot', 'social_card'],
      });
      expect(acme.runs.map((r) => r.charged)).toEqual([0, 2, 8]);
      const globex = await list(GLOBEX);
      expect(globex.runs.map((r) => r.run_id)).toEqual([globexRun]);

      const unknown = await raw(server.origin, '/viewer/api/runs/run_doesnotexist', {
        authorization: `Bearer ${ACME}`,
      });
      const theirs = await raw(server.origin, `/viewer/api/runs/${globexRun}`, { authorization: `Bearer ${ACME}` });
      const theirImage = await raw(server.origin, `/viewer/api/runs/${globexRun}/assets/0`, {
        authorization: `Bearer ${ACME}`,
      });
      expect([unknown.status, theirs.status, theirImage.status]).toEqual([404, 404, 404]);
      expect(JSON.parse(theirs.body).error.code).toBe(JSON.parse(unknown.body).error.code);
      expect(theirs.body + theirImage.body).not.toMatch(/globex/i);

      expect((await list(ACME, '?tool=social_card')).runs.map((r) => r.tool)).toEqual(['social_card', 'social_card']);
      expect((await list(ACME, '?phase=canceled')).runs.map((r) => r.run_id)).toEqual([acmeRuns[0]!.id]);
      expect(
        (await raw(server.origin, '/viewer/api/runs?phase=nonsense', { authorization: `Bearer ${ACME}` })).status,
      ).toBe(400);
    });

    it('reads only: anything but GET is refused', async () => {
      const response = await fetch(`${server.origin}/viewer/api/runs`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ACME}` },
      });
      expect(response.status).toBe(405);
    });
  });

  describe('in Chromium', () => {
    const rows = (page: Page) =>
      page.locator('tr.run').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-run')));

    it("shows a tenant's runs with phases, images, scores and charges, and filters them by tool and phase", async () => {
      const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
      const page = await context.newPage();
      page.on('pageerror', (err) => console.error('viewer page error:', err));
      await page.goto(`${server.origin}/viewer#token=${ACME}`);
      await expect.poll(() => rows(page)).toEqual(acmeRuns.map((r) => r.id));
      // The token handed over in the fragment is not left in the address bar.
      expect(page.url()).toBe(`${server.origin}/viewer`);
      expect(await page.locator('#who').textContent()).toBe('tenant acme');
      expect(await page.locator('#usage').textContent()).toBe(
        '3 runs · 2 charges · 10 credits billed · 1 replay absorbed (not billed)',
      );

      const shot = page.locator(`tr.run[data-run="${acmeRuns[2]!.id}"]`);
      await expect
        .poll(() =>
          shot
            .locator('img')
            .evaluateAll((imgs) => imgs.map((i) => (i as unknown as { naturalWidth: number }).naturalWidth)),
        )
        .toEqual([1080, 1080]);
      expect(await shot.locator('.score').textContent()).toMatch(/^\d\.\d\d$/);
      expect(await shot.locator('td.charge').textContent()).toBe('8 credits');
      expect(
        await shot.locator('ol.phases li').evaluateAll((lis) => lis.map((li) => li.getAttribute('data-phase'))),
      ).toEqual(['queued', 'composing', 'rendering', 'done']);
      const canceled = page.locator(`tr.run[data-run="${acmeRuns[0]!.id}"]`);
      expect(await canceled.locator('.badge').textContent()).toBe('canceled');
      expect(await canceled.locator('td.charge').textContent()).toBe('not billed');
      await expect.poll(() => page.locator(`tr.run[data-run="${acmeRuns[1]!.id}"] img`).count()).toBe(1);

      // A run's row opens onto every check of every image.
      await shot.click();
      const detail = page.locator(`tr[data-detail="${acmeRuns[2]!.id}"]`);
      expect(await detail.locator('li[data-check]').count()).toBe(14);
      await page.screenshot({ path: `${SCREENSHOTS}run-viewer.png`, fullPage: true });

      await page.selectOption('#tool', 'social_card');
      await expect.poll(() => rows(page)).toEqual([acmeRuns[0]!.id, acmeRuns[1]!.id]);
      expect(page.url()).toBe(`${server.origin}/viewer?tool=social_card`);
      await page.selectOption('#phase', 'canceled');
      await expect.poll(() => rows(page)).toEqual([acmeRuns[0]!.id]);
      await page.screenshot({ path: `${SCREENSHOTS}run-viewer-filtered.png`, fullPage: true });
      await page.selectOption('#tool', '');
      await page.selectOption('#phase', 'done');
      await expect.poll(() => rows(page)).toEqual([acmeRuns[1]!.id, acmeRuns[2]!.id]);
      expect(await page.content()).not.toContain(globexRun);
      await context.close();
    });

    it('asks for a token, and shows another tenant only its own runs', async () => {
      const context = await browser.newContext({ viewport: { width: 1200, height: 600 } });
      const page = await context.newPage();
      await page.goto(`${server.origin}/viewer`);
      await page.locator('#login').waitFor();
      expect(await page.locator('#login-note').textContent()).toBe('This server needs a bearer token.');
      await page.fill('#token', 'wrong-token-0123456789abcdef');
      await page.click('#login-form button');
      await expect.poll(() => page.locator('#login-note').textContent()).toBe('That token was not accepted.');
      await page.screenshot({ path: `${SCREENSHOTS}run-viewer-login.png` });

      await page.fill('#token', GLOBEX);
      await page.click('#login-form button');
      await expect.poll(() => rows(page)).toEqual([globexRun]);
      expect(await page.locator('#who').textContent()).toBe('tenant globex');
      const content = await page.content();
      for (const run of acmeRuns) expect(content).not.toContain(run.id);
      await context.close();
    });
  });
});
