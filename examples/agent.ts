/**
 * An agent-style loop on a long-running usage (API.md §13), with the client's CreditsSession:
 *   start (hold by estimate) → a heartbeat extends the hold → each step's tokens are charged as an
 *   increment (final: false) → the last step closes the usage → the wallet and the usage's story.
 *
 *   npm run example:agent
 *
 * Needs the demo data of `npm run seed:demo` (or of `npm run example:partner`): user "demo-user",
 * feature "ai_chat_v1", models "gpt-4o" and "gpt-4o-mini". Environment as examples/partner.ts:
 * CREDITS_URL (default http://localhost:3000), CREDITS_API_KEY (default dev-server-key), RABBITMQ_URL
 * (optional: increments go through the queue). Ctrl-C cancels the hold (what was charged stays).
 */
import { CreditsClient, CreditsError, CreditsSession, Usage } from '../client';

const baseUrl = (process.env.CREDITS_URL || 'http://localhost:3000').replace(/\/+$/, '');
const apiKey = process.env.CREDITS_API_KEY || 'dev-server-key';
const rabbitmqUrl = process.env.RABBITMQ_URL || undefined;

const USER_ID = 'demo-user';
const FEATURE = 'ai_chat_v1';
const STEPS = 5;

const say = (line = '') => process.stdout.write(`${line}\n`);

async function main(): Promise<void> {
  const credits = new CreditsClient({ baseUrl, apiKey, rabbitmqUrl });
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  try {
    // What the whole run is expected to use: the hold covers it (or min_holding_credits, if more).
    const estimate: Usage[] = [{ aiModel: 'gpt-4o', inputTokens: STEPS * 4000, outputTokens: STEPS * 800 }];
    const session = await CreditsSession.start(credits, {
      userId: USER_ID,
      featureEndpointId: FEATURE,
      estimate,
      ttlSeconds: 120, // a heartbeat every 40 s keeps it alive; a crashed agent's hold lapses in 2 minutes
      signal: abort.signal,
      onHeartbeatError: (error) => say(`   heartbeat failed: ${error instanceof Error ? error.message : String(error)}`),
    });
    say(`start      held ${session.started.hold_amount} until ${session.expiresAt}  (usage_key ${session.usageKey})`);
    try {
      for (let step = 1; step < STEPS; step++) {
        const used = agentStep(step);
        const answer = await session.increment(used);
        say(
          answer.status === 'queued'
            ? `step ${step}     increment queued (${answer.idempotency_key})`
            : `step ${step}     charged ${answer.credits_charged}, ${answer.credits_charged_total} so far; hold still open`,
        );
      }
      const last = await session.finish(agentStep(STEPS));
      say(
        last.status === 'queued'
          ? `final      queued; the service closes the usage shortly`
          : `final      charged ${last.credits_charged}, total ${last.credits_charged_total}; usage closed`,
      );
    } finally {
      await session.close(); // cancels the hold if the loop failed before finish
    }
    const wallet = await credits.getWallet(USER_ID);
    say(`wallet     balance ${wallet.balance}  held ${wallet.held}  available ${wallet.credits}`);
  } finally {
    await credits.close();
  }
}

/** One step of the agent: a planning call and a cheaper tool call, as the models would report them. */
function agentStep(step: number): Usage[] {
  return [
    { aiModel: 'gpt-4o', inputTokens: 3000 + step * 100, cachedInputTokens: 1000, outputTokens: 600 },
    { aiModel: 'gpt-4o-mini', inputTokens: 900, outputTokens: 120 },
  ];
}

main().catch((error: unknown) => {
  process.stderr.write(
    error instanceof CreditsError
      ? `credits service refused: ${error.status}${error.httpStatus ? ` (HTTP ${error.httpStatus})` : ''}: ${error.message}\n`
      : `example failed: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exitCode = 1;
});
