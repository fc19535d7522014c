import { Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';

/**
 * A sweep run every `intervalMs` (0 = never on this instance), one at a time: a tick that finds
 * the previous run still going skips. The timer does not keep the process alive, and shutdown
 * waits for a run in progress. A failed run is logged and tried again on the next tick — what a
 * sweep does is safe to repeat and safe with several instances (each says how).
 */
export abstract class PeriodicSweep implements OnApplicationBootstrap, OnApplicationShutdown {
  protected abstract readonly logger: Logger;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;

  protected abstract get intervalMs(): number;

  /** One run; the message to log when it did something, else undefined. */
  protected abstract run(): Promise<{ message: string; fields: Record<string, unknown> } | undefined>;

  onApplicationBootstrap(): void {
    if (this.intervalMs === 0) return;
    this.timer = setInterval(() => {
      this.running ??= this.tick().finally(() => (this.running = undefined));
    }, this.intervalMs);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  private async tick(): Promise<void> {
    try {
      const done = await this.run();
      if (done) this.logger.log(done.fields, done.message);
    } catch (error) {
      this.logger.warn({ err: (error as Error).message }, `${this.constructor.name} failed; retrying on the next tick`);
    }
  }
}

/** Runs `batch` until it handles fewer than `size` rows (a full batch means there may be more); the total. */
export async function drain(size: number, batch: () => Promise<number>): Promise<number> {
  let total = 0;
  let n: number;
  do {
    n = await batch();
    total += n;
  } while (n >= size);
  return total;
}
