import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createCatalog, MULTI_QUEUE, startHold } from './support/catalog';
import { createTestDatabase, TestDatabase } from './support/database';
import { ADMIN_KEY, SERVICE_KEY } from './support/http';
import { createTestVhost, publish, TestVhost } from './support/rabbit';
import { ServiceProcess, spawnService } from './support/service-process';
import { waitFor } from './support/wait';

/** Debian's chromium (`.ci/run` installs it); nothing here may download a browser. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const USER = 'console-user';
/** `npm run console:screenshots` sets this to docs/: the README's pictures come from this very test. */
const SHOTS = process.env.CONSOLE_SCREENSHOTS;

/** The console's own spelling of a money string: grouped digits, the exact 6 decimals. */
const grouped = (value: string) => value.replace(/^-/, '−').replace(/\B(?=(\d{3})+(?!\d)\.)/g, ',');

describe('operator console in a real browser (headless Chromium) against the real service', () => {
  let db: TestDatabase;
  let vhost: TestVhost;
  let service: ServiceProcess;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];
  const consoleErrors: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`No Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
    db = await createTestDatabase();
    vhost = await createTestVhost();
    service = await spawnService({ DATABASE_URL: db.url, RABBITMQ_URL: vhost.url, LOG_LEVEL: 'info' });
    await createCatalog(service.request);
    const created = await service.request('POST', '/api/wallets', { body: { user_id: USER, initial_credits: '1500' } });
    expect(created.status).toBe(201);
    await service.request('POST', `/api/wallets/${USER}/top-up`, { body: { amount: '2500.5', idempotency_key: 'console-top-up' } });
    const usageKey = await startHold(service.request, USER, 'chat');
    const settled = await service.request('POST', '/api/credits-process/end-multimodel', {
      key: SERVICE_KEY,
      body: {
        user_id: USER,
        usage_key: usageKey,
        feature_endpoint_id: 'chat',
        usages: [{ ai_model: 'gpt-4o', input_tokens: 12000, output_tokens: 3000 }],
      },
    });
    expect(settled.status).toBe(200);
    await startHold(service.request, USER, 'chat'); // stays live: the wallet page lists it

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    // Injected by the browser itself, so the page's CSP (no inline script) does not apply to it.
    await context.addInitScript(`
      window.__csp = [];
      document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
    `);
    page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('console', (message) => message.type() === 'error' && consoleErrors.push(message.text()));
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await service?.stop();
    await db?.drop();
    await vhost?.delete();
  }, 60_000);

  const figure = (name: string) => page.locator(`[data-figure="${name}"]`).innerText();
  const shoot = async (name: string) => {
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/console-${name}.png`, fullPage: true });
  };
  const cspViolations = () => page.evaluate<string[]>('window.__csp');

  it('is served with a strict Content-Security-Policy, and a deep link asks to sign in first', async () => {
    const response = await page.goto(`${service.baseUrl}/console/wallets/${USER}`);
    expect(response?.status()).toBe(200);
    const csp = response?.headers()['content-security-policy'] ?? '';
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    await expect(page.locator('input[type="password"]').count()).resolves.toBe(1);
  });

  it('refuses a wrong key with the API message, then signs in with Enter and opens the linked wallet', async () => {
    await page.fill('input[type="password"]', 'not-a-key');
    await page.press('input[type="password"]', 'Enter');
    await page.locator('[role="alert"]').waitFor();
    expect(await page.locator('[role="alert"]').innerText()).toMatch(/unauthorized/);

    await page.fill('input[type="password"]', ADMIN_KEY);
    await page.press('input[type="password"]', 'Enter');
    await page.locator('[data-figure="balance"]').waitFor();
    const wallet = (await service.request('GET', `/api/wallets/${USER}`)).body.data;
    expect(await figure('balance')).toBe(grouped(wallet.balance));
    expect(await figure('held')).toBe(grouped(wallet.held));
    expect(await figure('available')).toBe(grouped(wallet.credits));
    // The key is in this tab's session storage only: not in the address, not in a cookie.
    expect(page.url()).not.toContain(ADMIN_KEY);
    expect(await page.context().cookies()).toEqual([]);
    expect(await page.evaluate<string[]>('Object.values(sessionStorage)')).toContain(ADMIN_KEY);
  });

  it('shows the balance chart, the live hold and every ledger entry with its balance_after', async () => {
    await page.locator('[data-chart="balance"]').waitFor();
    expect(await page.locator('[data-chart="balance"]').isVisible()).toBe(true);
    const ledger = (await service.request('GET', `/api/wallets/${USER}/transactions`)).body.data.items;
    const rows = page.locator('[data-table="ledger"] tbody tr');
    await waitFor('the ledger rows', async () => (await rows.count()) === ledger.length);
    for (const [i, entry] of ledger.entries()) expect(await rows.nth(i).innerText()).toContain(grouped(entry.balance_after));
    const holds = (await service.request('GET', `/api/wallets/${USER}/holds`)).body.data.items;
    expect(holds).toHaveLength(1);
    expect(await page.locator('main').innerText()).toContain(holds[0].usage_key);
    await shoot('wallet');
  });

  it('replays a settlement failure with its button, and the wallet shows the charge', async () => {
    // A queued settlement for a model without a price is recorded as a failure …
    await publish(vhost.url, MULTI_QUEUE, [
      {
        user_id: USER,
        feature_endpoint_id: 'chat',
        idempotency_key: 'console-late-model',
        usages: [{ ai_model: 'late-model', input_tokens: 1000000, output_tokens: 0 }],
      },
    ]);
    const failure = await waitFor('the failure to be recorded', async () => {
      const items = (await service.request('GET', '/api/settlement-failures?status=pending')).body.data.items;
      return items[0];
    });
    // … the operator adds the price, then replays it from the console.
    await service.request('POST', '/api/pricing/models', {
      body: { ai_model: 'late-model', input_price_per_million: '2', output_price_per_million: '2' },
    });
    const before = (await service.request('GET', `/api/wallets/${USER}`)).body.data;

    await page.click('a[href="/console/failures"]');
    const row = page.locator(`[data-failure="${failure.id}"]`);
    await row.waitFor();
    expect(await row.innerText()).toContain(failure.reason);
    await shoot('failures');
    await row.locator('button', { hasText: 'Replay' }).click();
    await page.locator('[role="status"]').waitFor();
    expect(await page.locator('[role="status"]').innerText()).toMatch(new RegExp(`Failure ${failure.id} replayed`));

    const after = (await service.request('GET', `/api/wallets/${USER}`)).body.data;
    expect(after.balance).not.toBe(before.balance);
    await page.click('a[href="/console/wallets"]');
    await page.click(`a[href="/console/wallets/${USER}"]`);
    await waitFor('the new balance on the wallet page', async () => (await figure('balance')) === grouped(after.balance));
    expect((await service.request('GET', '/api/reconciliation')).body.data.mismatches).toEqual([]);
  });

  it('opens every view by its address without a page error or a CSP violation, and never logs the key', async () => {
    for (const path of ['/console/wallets?q=console', '/console/failures?status=replayed', '/console/reconciliation', '/console/pricing']) {
      await page.goto(`${service.baseUrl}${path}`);
      await page.locator('main h1').waitFor();
      await page.locator('text=Loading…').waitFor({ state: 'detached' });
      expect(await page.locator('.error').count()).toBe(0);
      if (path === '/console/pricing') await shoot('pricing');
    }
    expect(await page.locator('main').innerText()).toContain('gpt-4o');
    expect(pageErrors).toEqual([]);
    expect(consoleErrors.filter((m) => !m.includes('401'))).toEqual([]);
    expect(await cspViolations()).toEqual([]);
    expect(service.lines.some((line) => line.includes(ADMIN_KEY))).toBe(false);
  });
});
