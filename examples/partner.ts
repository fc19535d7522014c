/**
 * A partner service's whole credits flow, run against a running credits service:
 *   startProcess → (the AI work) → endMultiModel → the wallet afterwards.
 *
 *   npm run example:partner
 *
 * Environment: CREDITS_URL (default http://localhost:3000), CREDITS_API_KEY (default dev-server-key),
 * RABBITMQ_URL (optional: settle through the queue instead of HTTP), CREDITS_ADMIN_KEY (default
 * dev-admin-key: only used to create the demo data — user "demo-user", feature "ai_chat_v1",
 * models "gpt-4o" and "gpt-4o-mini" — when it is missing; `npm run seed:demo` creates the same).
 */
import { setTimeout as delay } from 'node:timers/promises';
import { CreditsClient, CreditsError, isInsufficientCredits, Usage, UsageAnswer } from '../client';

const baseUrl = (process.env.CREDITS_URL || 'http://localhost:3000').replace(/\/+$/, '');
const apiKey = process.env.CREDITS_API_KEY || 'dev-server-key';
const adminKey = process.env.CREDITS_ADMIN_KEY || 'dev-admin-key';
const rabbitmqUrl = process.env.RABBITMQ_URL || undefined;

const USER_ID = 'demo-user';
const FEATURE = 'ai_chat_v1';

const say = (line = '') => process.stdout.write(`${line}\n`);

async function main(): Promise<void> {
  say(`credits service  ${baseUrl}  (settlements via ${rabbitmqUrl ? 'RabbitMQ' : 'HTTP'})`);
  await ensureDemoData();

  const credits = new CreditsClient({ baseUrl, apiKey, rabbitmqUrl });
  try {
    const before = await credits.getWallet(USER_ID);
    say(`wallet before    balance ${before.balance}  held ${before.held}  available ${before.credits}`);

    // 1. Before the work: may this user use the feature? Places a hold of its min_holding_credits.
    const hold = await credits.startProcess(USER_ID, FEATURE);
    say(`1. start         ${hold.status}: held ${hold.hold_amount} until ${hold.expires_at}`);
    say(`                 usage_key ${hold.usage_key}`);

    // 2. The work itself. A real service calls its models here and reads the token counts they report.
    const usages = pretendAiWork();
    usages.forEach((u, i) => {
      say(
        `${i === 0 ? '2. work        ' : '               '}  ${u.aiModel}: ${u.inputTokens} input (${u.cachedInputTokens ?? 0} cached), ${u.outputTokens} output tokens`,
      );
    });
    const quote = await credits.quote(FEATURE, usages);
    say(`                 the price table says this costs ${quote.credits_charged} credits`);

    // 3. After the work: settle what it really used. The hold is released and the real cost charged, once.
    const outcome = await credits.endMultiModel({ userId: USER_ID, usageKey: hold.usage_key, featureEndpointId: FEATURE, usages });
    if (outcome.status === 'queued') {
      say(`3. settle        queued on ${outcome.queue} (confirmed by the broker)`);
      const usage = await settledUsage(credits, hold.usage_key);
      say(`                 settled by the service: charged ${usage.settlement?.credits_charged}`);
    } else {
      say(`3. settle        ${outcome.status}: charged ${outcome.credits_charged}${outcome.late ? ' (late: the hold had expired)' : ''}`);
    }

    const after = await credits.getWallet(USER_ID);
    say(`wallet after     balance ${after.balance}  held ${after.held}  available ${after.credits}`);
  } finally {
    await credits.close();
  }
}

/** Token counts as the models would report them. */
function pretendAiWork(): Usage[] {
  return [
    { aiModel: 'gpt-4o', inputTokens: 1200, cachedInputTokens: 200, outputTokens: 350 },
    { aiModel: 'gpt-4o-mini', inputTokens: 800, outputTokens: 150 },
  ];
}

/** A queued settlement commits shortly after the broker took it: follow it by its usage_key. */
async function settledUsage(credits: CreditsClient, usageKey: string): Promise<UsageAnswer> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const usage = await credits.getUsage(usageKey);
    if (usage.status === 'settled') return usage;
    if (Date.now() > deadline)
      throw new Error(`the queued settlement of ${usageKey} was not applied within 15 s: is the service connected to the same RabbitMQ?`);
    await delay(100);
  }
}

/**
 * Creates the demo data this example needs when it is missing, with the admin key — the same
 * values as `npm run seed:demo`. When the admin key is refused (a production service), it assumes
 * an operator prepared the data.
 */
async function ensureDemoData(): Promise<void> {
  const created: string[] = [];
  const ensure = async (what: string, path: string, createPath: string, body: unknown): Promise<boolean> => {
    const found = await admin('GET', path);
    if (found.status === 401 || found.status === 403) return false;
    if (found.status === 200) return true;
    if (found.status !== 404) throw new Error(`GET ${path} answered ${found.status}: ${found.message}`);
    const made = await admin('POST', createPath, body);
    if (made.status !== 201 && made.status !== 409) throw new Error(`creating ${what} failed (${made.status}): ${made.message}`);
    if (made.status === 201) created.push(what);
    return true;
  };
  const allowed = await ensure('model gpt-4o', '/api/pricing/models/gpt-4o', '/api/pricing/models', {
    ai_model: 'gpt-4o',
    input_price_per_million: '2.50',
    output_price_per_million: '10.00',
    cached_input_price_per_million: '1.25',
  });
  if (!allowed) {
    say('demo data       not checked (the admin key was refused); expecting it to exist');
    return;
  }
  await ensure('model gpt-4o-mini', '/api/pricing/models/gpt-4o-mini', '/api/pricing/models', {
    ai_model: 'gpt-4o-mini',
    input_price_per_million: '0.15',
    output_price_per_million: '0.60',
    cached_input_price_per_million: '0.075',
  });
  await ensure(`feature ${FEATURE}`, `/api/features/${FEATURE}`, '/api/features', {
    feature_endpoint_id: FEATURE,
    name: 'AI chat',
    min_holding_credits: '5',
    profit_margin: '0.2',
  });
  await ensure(`wallet ${USER_ID} (1000 credits)`, `/api/wallets/${USER_ID}`, '/api/wallets', {
    user_id: USER_ID,
    plan: 'pro',
    initial_credits: '1000',
  });
  say(`demo data       ${created.length ? `created ${created.join(', ')}` : 'present'}`);
}

async function admin(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; message: string }> {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { 'x-server-api-key': adminKey, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let message = text.slice(0, 200);
  try {
    message = (JSON.parse(text) as { data?: { message?: string } }).data?.message ?? message;
  } catch {
    /* not JSON: keep the text */
  }
  return { status: response.status, message };
}

main().catch((error: unknown) => {
  if (isInsufficientCredits(error)) {
    process.stderr.write(
      `${USER_ID} has ${error.details.credits} credits available, ${error.details.required} required: top it up with\n` +
        `  curl -X POST ${baseUrl}/api/wallets/${USER_ID}/top-up -H 'x-server-api-key: ${adminKey === 'dev-admin-key' ? adminKey : '<admin key>'}' ` +
        `-H 'content-type: application/json' -d '{"amount":"1000"}'\n`,
    );
  } else if (error instanceof CreditsError) {
    process.stderr.write(
      `credits service refused: ${error.status}${error.httpStatus ? ` (HTTP ${error.httpStatus})` : ''}: ${error.message}\n`,
    );
  } else {
    const code = (error as { cause?: { code?: string } })?.cause?.code;
    process.stderr.write(
      code === 'ECONNREFUSED'
        ? `cannot reach the credits service at ${baseUrl} (ECONNREFUSED): start it with \`npm start\`, or set CREDITS_URL\n`
        : `example failed: ${error instanceof Error ? error.message : String(error)}${code ? ` (${code})` : ''}\n`,
    );
  }
  process.exitCode = 1;
});
