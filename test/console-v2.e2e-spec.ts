/*
 * The console's grants, ledger kinds of v2 (grant, grant_voided, refund, a charge's draws), webhooks,
 * deliveries and events views in a real browser against the real service (API.md §8–§10, §14).
 * `npm run console:screenshots` runs it too, with CONSOLE_SCREENSHOTS=docs.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createCatalog, startHold } from './support/catalog';
import { createTestDatabase, TestDatabase } from './support/database';
import { ADMIN_KEY, SERVICE_KEY } from './support/http';
import { createTestVhost, TestVhost } from './support/rabbit';
import { ServiceProcess, spawnService } from './support/service-process';
import { waitFor } from './support/wait';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const USER = 'console-v2-user';
/** `npm run console:screenshots` sets this to docs/: the README's pictures come from this very test. */
const SHOTS = process.env.CONSOLE_SCREENSHOTS;
const grouped = (value: string) => value.replace(/^-/, '−').replace(/\B(?=(\d{3})+(?!\d)\.)/g, ',');

/** A webhook receiver on this machine: records every POST, answers 200. */
interface Received {
  headers: IncomingHttpHeaders;
  body: { id: string; type: string; data: Record<string, unknown> };
}

describe('operator console v2 (grants, webhooks, events) in a real browser against the real service', () => {
  let db: TestDatabase;
  let vhost: TestVhost;
  let service: ServiceProcess;
  let browser: Browser;
  let page: Page;
  let receiver: Server;
  let receiverUrl: string;
  const received: Received[] = [];
  const pageErrors: string[] = [];
  const consoleErrors: string[] = [];
  const cspViolations: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`No Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
    receiver = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        received.push({ headers: request.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
        response.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/credits`;

    db = await createTestDatabase();
    vhost = await createTestVhost();
    service = await spawnService({ DATABASE_URL: db.url, RABBITMQ_URL: vhost.url, LOG_LEVEL: 'info' });
    await createCatalog(service.request);
    expect((await service.request('POST', '/api/wallets', { body: { user_id: USER, initial_credits: '1000' } })).status).toBe(201);

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
    // UTC in the page, so a datetime-local value is the ISO instant's first 16 characters.
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, timezoneId: 'UTC' });
    // Reported to this process, not kept in the page: a reload or goto starts a new document, and a
    // violation of an earlier one must still count. Injected by the browser, so the page's CSP does not apply.
    await context.exposeBinding('__cspViolation', (_source, text: string) => void cspViolations.push(text));
    await context.addInitScript(`
      document.addEventListener('securitypolicyviolation', (e) => window.__cspViolation(e.violatedDirective + ' ' + e.blockedURI));
    `);
    page = await context.newPage();
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('console', (message) => message.type() === 'error' && consoleErrors.push(`${message.text()} ${message.location().url}`));

    await page.goto(`${service.baseUrl}/console/wallets/${USER}`);
    await page.fill('input[type="password"]', ADMIN_KEY);
    await page.press('input[type="password"]', 'Enter');
    await page.locator('[data-figure="balance"]').waitFor();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await service?.stop();
    await db?.drop();
    await vhost?.delete();
    await new Promise((resolve) => receiver?.close(resolve));
  }, 60_000);

  const figure = (name: string) => page.locator(`[data-figure="${name}"]`).innerText();
  const shoot = async (name: string) => {
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/console-${name}.png`, fullPage: true });
  };
  const grantsOf = async () => (await service.request('GET', `/api/wallets/${USER}/grants`)).body.data.items;
  const webhooks = async () =>
    (await service.request('GET', '/api/webhooks')).body.data.items as { webhook_id: string; url: string; active: boolean }[];
  const ledgerOf = async () => (await service.request('GET', `/api/wallets/${USER}/transactions`)).body.data.items;

  it('lists the wallet grants in drawing order, with "nothing expires" while none expires', async () => {
    const grants = await grantsOf();
    expect(grants).toHaveLength(1); // initial_credits: a paid grant without expiry
    const rows = page.locator('[data-table="grants"] tbody tr');
    await waitFor('the grant rows', async () => (await rows.count()) === grants.length);
    const text = await rows.first().innerText();
    expect(text).toContain('paid');
    expect(text).toContain(grouped(grants[0].remaining));
    expect(text).toContain('never');
    expect(grants[0].origin).toBe('initial');
    expect(await rows.first().locator('[data-grant-origin]').innerText()).toBe('initial credits');
    expect(await figure('next-expiry')).toContain('nothing expires');
  });

  it('grants promotional credits that expire in five days: row, next expiry and balance follow', async () => {
    // Outside GRANT_EXPIRY_NOTICE_SECONDS (3 days): no grant.expiring for this one.
    const expiresAt = new Date(Date.now() + 5 * 86_400_000);
    expiresAt.setUTCSeconds(0, 0);
    await page.locator('summary', { hasText: 'Grant credits' }).click();
    const form = page.locator('[data-form="grant"]');
    await form.locator('input[name="amount"]').fill('1250.5');
    await form.locator('select[name="kind"]').selectOption('promotional');
    await form.locator('input[name="priority"]').fill('10');
    await form.locator('input[name="expires_at"]').fill(expiresAt.toISOString().slice(0, 16));
    await form.locator('input[name="description"]').fill('console goodwill');
    await form.locator('button[type="submit"]').click();
    await page.locator('[data-outcome]').waitFor();
    expect(await page.locator('[data-outcome]').innerText()).toContain('Granted 1,250.500000 promotional credits.');

    const grant = (await grantsOf()).find((g: { kind: string }) => g.kind === 'promotional');
    expect(grant).toMatchObject({
      amount: '1250.500000',
      remaining: '1250.500000',
      priority: 10,
      status: 'active',
      origin: 'grant',
      description: 'console goodwill',
      debt_paid: '0.000000',
    });
    expect(Date.parse(grant.expires_at)).toBe(expiresAt.getTime());
    const row = page.locator(`[data-grant="${grant.grant_id}"]`);
    await row.waitFor();
    expect(await row.innerText()).toMatch(/in [45] days/);
    expect(await row.locator('[data-grant-origin]').innerText()).toContain('console goodwill');
    await waitFor('the next expiry', async () => (await figure('next-expiry')).includes('1,250.500000'));
    const wallet = (await service.request('GET', `/api/wallets/${USER}`)).body.data;
    await waitFor('the new balance', async () => (await figure('balance')) === grouped(wallet.balance));
    expect(wallet.balance).toBe('2250.500000');
    expect(wallet.grants).toEqual({ paid: '1000.000000', promotional: '1250.500000' });
    expect(await figure('grants-promotional')).toBe('1,250.500000');
    // The ledger's new entry says what it is in words, and which grant it made.
    const entry = page.locator('[data-table="ledger"] tbody tr[data-kind="grant"]');
    await entry.waitFor();
    expect(await entry.innerText()).toContain(`grant ${grant.grant_id.slice(0, 8)}`);
  });

  it('voids a grant with a reason (browser prompt): its status says voided and the ledger has grant_voided', async () => {
    const grant = (await grantsOf()).find((g: { kind: string }) => g.kind === 'promotional');
    const row = page.locator(`[data-grant="${grant.grant_id}"]`);
    page.once('dialog', (dialog) => void dialog.accept('console test: wrong customer'));
    await row.locator('button', { hasText: 'Void' }).click();
    await waitFor('the row to say voided', async () => (await row.locator('[data-grant-status]').innerText()).includes('voided'));
    expect(await row.locator('[data-grant-status]').innerText()).toContain('console test: wrong customer');
    expect(await page.locator('[data-outcome]').innerText()).toContain(`Grant ${grant.grant_id} voided.`);
    expect((await grantsOf()).find((g: { grant_id: string }) => g.grant_id === grant.grant_id)).toMatchObject({
      status: 'voided',
      voided: '1250.500000',
      void_reason: 'console test: wrong customer',
    });
    const ledger = await ledgerOf();
    expect(ledger[0].kind).toBe('grant_voided');
    await waitFor('the balance back', async () => (await figure('balance')) === grouped('1000.000000'));
    const entry = page.locator('[data-table="ledger"] tbody tr[data-kind="grant_voided"]');
    await entry.waitFor();
    const text = await entry.innerText();
    expect(text).toContain('grant voided');
    expect(text).toContain('console test: wrong customer');
    expect(text).toContain(`grant ${grant.grant_id.slice(0, 8)}`);
  });

  it('shows which grant paid a charge, and a refund with its reason and the grant it returned to', async () => {
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
    const refunded = await service.request('POST', `/api/credits-process/usages/${usageKey}/refund`, {
      key: SERVICE_KEY,
      body: { amount: '0.01', reason: 'console test: bad answer' },
    });
    expect(refunded.status).toBe(200);
    expect(refunded.body.data.status).toBe('refunded');
    const ledger = await ledgerOf();
    const charge = ledger.find((e: { kind: string }) => e.kind === 'charge');
    const paidGrant = charge.metadata.draws[0].grant_id as string;
    expect(charge.metadata.draws).toEqual([{ grant_id: paidGrant, amount: charge.amount.replace(/^-/, '') }]);

    await page.reload();
    const chargeRow = page.locator(`[data-table="ledger"] tbody tr[data-kind="charge"]`);
    await chargeRow.waitFor();
    expect(await chargeRow.locator('[data-draws]').innerText()).toBe(
      `paid by ${paidGrant.slice(0, 8)} ${grouped(charge.amount.replace(/^-/, ''))}`,
    );
    const refundRow = page.locator(`[data-table="ledger"] tbody tr[data-kind="refund"]`);
    const text = await refundRow.innerText();
    expect(text).toContain('refund');
    expect(text).toContain(usageKey);
    expect(text).toContain('console test: bad answer');
    expect(await refundRow.locator('[data-draws]').innerText()).toBe(`returned to ${paidGrant.slice(0, 8)} 0.010000`);
    const wallet = (await service.request('GET', `/api/wallets/${USER}`)).body.data;
    expect(await figure('balance')).toBe(grouped(wallet.balance));
    await shoot('wallet-grants');
  });

  it('creates a webhook (secret shown once), pauses and activates it', async () => {
    await page.click('a[href="/console/webhooks"]');
    const form = page.locator('[data-form="create-webhook"]');
    await form.locator('input[name="url"]').fill(receiverUrl);
    await form.locator('input[name="description"]').fill('console receiver');
    await form.locator('button[type="submit"]').click();
    const secret = await page.locator('[data-secret-value]').innerText();
    expect(secret.length).toBeGreaterThan(8);
    const [hook] = await webhooks();
    expect(hook).toMatchObject({ url: receiverUrl, active: true });
    expect(JSON.stringify(hook)).not.toContain(secret);
    await page.locator('[data-secret] button', { hasText: 'I have stored it' }).click();

    const row = page.locator(`[data-webhook="${hook.webhook_id}"]`);
    await row.locator('button', { hasText: 'Pause' }).click();
    await waitFor('paused', async () => (await row.locator('[data-webhook-status]').innerText()).includes('paused'));
    expect((await webhooks())[0].active).toBe(false);
    await row.locator('button', { hasText: 'Activate' }).click();
    await waitFor('active', async () => (await row.locator('[data-webhook-status]').innerText()).includes('active'));
    expect((await webhooks())[0].active).toBe(true);
    await shoot('webhooks');
  });

  it('shows the delivery of an event (status code, duration, outcome), lists the event and redelivers it', async () => {
    // A grant already inside the expiry-notice window writes grant.expiring at once.
    const granted = await service.request('POST', `/api/wallets/${USER}/grants`, {
      body: { amount: '5', kind: 'promotional', expires_at: new Date(Date.now() + 3_600_000).toISOString() },
    });
    expect(granted.status).toBe(201);
    const grantId = granted.body.data.grant.grant_id;
    const delivered = await waitFor('the delivery', async () =>
      received.find((r) => r.body.type === 'grant.expiring' && r.body.data.grant_id === grantId),
    );
    expect(delivered.headers['x-credits-event-id']).toBe(delivered.body.id);

    const [hook] = await webhooks();
    // The attempt is recorded once the receiver's answer is in: wait for it in the API, then open the page.
    await waitFor('the recorded attempt', async () => {
      const items = (await service.request('GET', `/api/webhooks/${hook.webhook_id}/deliveries`)).body.data.items;
      return items.some((d: { event_id: string; outcome: string }) => d.event_id === delivered.body.id && d.outcome === 'delivered');
    });
    await page.locator(`a[href="/console/webhooks/${hook.webhook_id}"]`).first().click();
    const delivery = page.locator(`[data-delivery="${delivered.body.id}"]`).first();
    await delivery.waitFor();
    const text = await delivery.innerText();
    expect(text).toContain('delivered');
    expect(text).toContain('200');
    expect(text).toMatch(/\d ms/);
    await shoot('webhook-deliveries');

    await page.click('a[href="/console/events"]');
    const event = page.locator(`[data-event="${delivered.body.id}"]`);
    await event.waitFor();
    expect(await event.innerText()).toContain('grant.expiring');
    expect(await event.innerText()).toContain('5.000000');
    expect(await event.locator('[data-deliveries]').innerText()).toMatch(/\d delivered/);
    await event.locator('button', { hasText: 'Redeliver' }).click();
    await page.locator('[data-outcome]').waitFor();
    expect(await page.locator('[data-outcome]').innerText()).toContain('queued again');
    await waitFor('the second delivery', async () => received.filter((r) => r.body.id === delivered.body.id).length >= 2);
    await shoot('events');

    // Filters by address.
    await page.goto(`${service.baseUrl}/console/events?type=grant.expiring&user_id=${USER}`);
    await event.waitFor();
    const types = await page.locator('[data-table="events"] [data-event-type]').allInnerTexts();
    expect(types.length).toBeGreaterThan(0);
    expect(new Set(types)).toEqual(new Set(['grant.expiring']));
  });

  it('deletes a webhook (browser confirm), with no page error, CSP violation or unexpected console error', async () => {
    await page.click('a[href="/console/webhooks"]');
    const [hook] = await webhooks();
    const row = page.locator(`[data-webhook="${hook.webhook_id}"]`);
    page.once('dialog', (dialog) => void dialog.accept());
    await row.locator('button', { hasText: 'Delete' }).click();
    await row.waitFor({ state: 'detached' });
    expect(await webhooks()).toEqual([]);
    expect(await page.locator('[data-unavailable]').count()).toBe(0);
    expect(pageErrors).toEqual([]);
    // Every route exists on this server: not even a 404 is expected.
    expect(consoleErrors).toEqual([]);
    expect(cspViolations).toEqual([]);
    expect(service.lines.some((line) => line.includes(ADMIN_KEY))).toBe(false);
  });
});
