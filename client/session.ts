import type { CreditsClient } from './credits.client';
import { CreditsError, isCreditsError } from './credits.errors';
import type { AccessibleAnswer, ExtendAnswer, SettleOptions, SettlementOutcome, Usage } from './credits.types';

/** How the session's timer is set: a timer by default; a test passes its own. */
export interface SessionTimer {
  every(ms: number, tick: () => void): { stop(): void };
}

const realTimer: SessionTimer = {
  every(ms, tick) {
    const handle = setInterval(tick, ms);
    handle.unref?.();
    return { stop: () => clearInterval(handle) };
  },
};

export interface SessionOptions {
  userId: string;
  featureEndpointId: string;
  /** What the work is expected to use: the hold becomes max(min_holding_credits, its quote). */
  estimate?: Usage[];
  /**
   * Every this many ms the hold's expiry is pushed to now + `ttlSeconds` (extend). Default: a third
   * of `ttlSeconds`, so two heartbeats may fail before the hold lapses. 0 = no heartbeat.
   */
  heartbeatMs?: number;
  /** The lifetime each heartbeat gives the hold. Default 300 s. */
  ttlSeconds?: number;
  /** Channel of the increments and the final settlement (default: the client's). */
  via?: SettleOptions['via'];
  /** Aborting it stops the heartbeat and cancels the hold (what was charged stays charged). */
  signal?: AbortSignal;
  /** A prefix for the increments' idempotency keys; default the usage_key (unique per session). */
  keyPrefix?: string;
  /** Called with a heartbeat's failure (the heartbeat stops on one the service will repeat: hold_expired, already_settled, conflict). */
  onHeartbeatError?: (error: unknown) => void;
  timer?: SessionTimer;
}

/** An increment that was sent with its key and has not been confirmed yet. */
interface PendingIncrement {
  idempotencyKey: string;
  usages: Usage[];
}

type SessionState = 'open' | 'finished' | 'cancelled';

/** Errors after which another extend cannot succeed: the heartbeat stops. */
const FINAL_HEARTBEAT_ERRORS = new Set(['hold_expired', 'already_settled', 'conflict', 'usage_key_not_found', 'usage_key_mismatch']);

/**
 * A long-running usage (API.md §13) from start to final settlement:
 *
 * ```ts
 * const session = await CreditsSession.start(credits, { userId, featureEndpointId: 'agent_v1', ttlSeconds: 600 });
 * try {
 *   for (const step of plan) await session.increment(await runStep(step)); // charged now, hold stays open
 *   await session.finish(lastUsages);                                        // closes the usage
 * } finally {
 *   await session.close();                                                   // cancels if not finished
 * }
 * ```
 *
 * Every step is idempotent, so every retry is safe: each increment gets its idempotency key
 * (`<usage_key>:<n>`) BEFORE its first attempt and keeps it through the client's retries, a
 * broker redelivery, and a later resend — an increment that failed is kept and resent under the
 * same key by `flush()`, which `finish()` calls first, so it is charged once whether or not the
 * first attempt had reached the service. The heartbeat only moves an expiry.
 */
export class CreditsSession {
  private state: SessionState = 'open';
  private sequence = 0;
  private readonly pending = new Map<string, PendingIncrement>();
  private heartbeat?: { stop(): void };
  private beating?: Promise<void>;
  private lastExtend?: ExtendAnswer;
  private readonly onAbort = () => void this.close();

  private constructor(
    private readonly client: CreditsClient,
    private readonly options: SessionOptions,
    readonly started: AccessibleAnswer,
  ) {}

  /** Starts the usage (one hold), then the heartbeat. Throws what startProcess throws. */
  static async start(client: CreditsClient, options: SessionOptions): Promise<CreditsSession> {
    if (options.signal?.aborted) throw new CreditsError({ status: 'aborted', message: 'The session was aborted before it started.' });
    const started = await client.startProcess(
      options.userId,
      options.featureEndpointId,
      options.estimate ? { estimate: options.estimate } : {},
    );
    const session = new CreditsSession(client, options, started);
    const ttl = options.ttlSeconds ?? 300;
    const every = options.heartbeatMs ?? Math.floor((ttl * 1000) / 3);
    if (every > 0) session.heartbeat = (options.timer ?? realTimer).every(every, () => void session.beat());
    options.signal?.addEventListener('abort', session.onAbort, { once: true });
    return session;
  }

  get usageKey(): string {
    return this.started.usage_key;
  }

  /** The expiry after the last heartbeat (or the start's). */
  get expiresAt(): string {
    return this.lastExtend?.expires_at ?? this.started.expires_at;
  }

  /** Increments sent whose answer was not a success: resent by `flush()` under the same keys. */
  get unconfirmed(): number {
    return this.pending.size;
  }

  get status(): SessionState {
    return this.state;
  }

  /**
   * Charges `usages` now and keeps the hold open (final: false). The key is made before the first
   * attempt; on failure the increment stays pending (see `flush`) and the error is thrown.
   */
  async increment(usages: Usage[]): Promise<SettlementOutcome> {
    this.assertOpen();
    const increment = { idempotencyKey: `${this.options.keyPrefix ?? this.usageKey}:${++this.sequence}`, usages };
    this.pending.set(increment.idempotencyKey, increment);
    return this.send(increment);
  }

  /** Resends every unconfirmed increment under its own key: each charges once, however often it is sent. */
  async flush(): Promise<SettlementOutcome[]> {
    const answers: SettlementOutcome[] = [];
    for (const increment of [...this.pending.values()]) answers.push(await this.send(increment));
    return answers;
  }

  /**
   * Closes the usage with its last usages (final: true), after resending unconfirmed increments.
   * Stops the heartbeat. Retrying `finish` after a failure is safe (the usage_key settles once).
   */
  async finish(usages: Usage[]): Promise<SettlementOutcome> {
    this.assertOpen();
    await this.flush();
    this.stopHeartbeat();
    const request = { userId: this.options.userId, usageKey: this.usageKey, featureEndpointId: this.options.featureEndpointId, usages };
    const answer = await this.client.endMultiModel(request, this.settleOptions());
    this.end('finished');
    return answer;
  }

  /**
   * Ends the session: a session not finished is cancelled (its hold released; increments already
   * charged stay charged). Idempotent; safe in a `finally`.
   */
  async close(): Promise<void> {
    this.stopHeartbeat();
    await this.beating;
    if (this.state !== 'open') return;
    this.end('cancelled');
    try {
      await this.client.cancel(this.usageKey);
    } catch (error) {
      // A hold that settled meanwhile (e.g. a finish whose answer was lost) has nothing to release.
      if (!isCreditsError(error, 'already_settled')) throw error;
    }
  }

  /** One heartbeat: pushes the expiry. Exposed for callers who drive it themselves (heartbeatMs: 0). */
  async beat(): Promise<ExtendAnswer | undefined> {
    if (this.state !== 'open' || this.beating) return undefined;
    let answer: ExtendAnswer | undefined;
    this.beating = this.client
      .extend(this.usageKey, { ttlSeconds: this.options.ttlSeconds ?? 300 })
      .then((extended) => {
        answer = extended;
        this.lastExtend = extended;
      })
      .catch((error: unknown) => {
        if (isCreditsError(error) && FINAL_HEARTBEAT_ERRORS.has(error.status)) this.stopHeartbeat();
        this.options.onHeartbeatError?.(error);
      })
      .finally(() => (this.beating = undefined));
    await this.beating;
    return answer;
  }

  private async send(increment: PendingIncrement): Promise<SettlementOutcome> {
    const request = {
      userId: this.options.userId,
      usageKey: this.usageKey,
      featureEndpointId: this.options.featureEndpointId,
      idempotencyKey: increment.idempotencyKey,
      final: false,
      usages: increment.usages,
    };
    const answer = await this.client.endMultiModel(request, this.settleOptions());
    this.pending.delete(increment.idempotencyKey);
    return answer;
  }

  private settleOptions(): SettleOptions {
    return this.options.via ? { via: this.options.via } : {};
  }

  private stopHeartbeat(): void {
    this.heartbeat?.stop();
    this.heartbeat = undefined;
  }

  private end(state: SessionState): void {
    this.state = state;
    this.options.signal?.removeEventListener('abort', this.onAbort);
  }

  private assertOpen(): void {
    if (this.state !== 'open')
      throw new CreditsError({ status: 'session_closed', message: `The session of ${this.usageKey} is ${this.state}.` });
  }
}
