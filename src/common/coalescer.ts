import { AsyncResource } from 'node:async_hooks';

/**
 * Runs work that arrives together as one batch, without ever waiting on purpose.
 *
 * Every submitted item joins a queue; on the next turn of the event loop the queue is cut into
 * batches of at most `maxBatch`, and up to `maxInFlight` batches run at once. While they run, new
 * items gather for the next batch, so under load batches grow by themselves and at light load an
 * item goes out alone, one event-loop turn after it arrived. This is what lets N concurrent
 * requests share ONE SQL statement (one round trip, one commit) instead of N.
 *
 * `run` resolves once the batch's shared work is done, with one answer (a promise) per item, in
 * order; the batch's slot is free from then on, and each caller gets its own answer as soon as it
 * settles — an item that needs more work (a fallback) holds up neither its batch nor the slot. If
 * `run` throws, every item of that batch is rejected with the error.
 *
 * A batch belongs to no single caller, so it runs outside the async context of whichever request
 * happened to schedule it (request-scoped log fields would otherwise name that request on lines
 * about the whole batch). Each caller resumes in its own context when its answer arrives.
 */
export class Coalescer<I, O> {
  private queue: { item: I; resolve(value: O): void; reject(reason: unknown): void }[] = [];
  private inFlight = 0;
  private scheduled = false;
  /** Created with the coalescer, i.e. outside any request: the context batches run in. */
  private readonly scope = new AsyncResource('Coalescer');

  constructor(
    private readonly run: (items: I[]) => Promise<Promise<O>[]>,
    private readonly maxBatch: number,
    private readonly maxInFlight: number,
  ) {
    if (maxBatch < 1 || maxInFlight < 1) throw new RangeError('maxBatch and maxInFlight must be at least 1');
  }

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      this.schedule();
    });
  }

  /** Items waiting for a batch (for tests and metrics). */
  get waiting(): number {
    return this.queue.length;
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= this.maxInFlight) return;
    this.scheduled = true;
    // Let the items that arrived in this turn of the event loop join the same batch.
    setImmediate(this.flush);
  }

  /** Bound to `scope` once (binding per call cost ~2 % of a request's CPU). */
  private readonly flush = this.scope.bind(() => {
    this.scheduled = false;
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) void this.execute(this.queue.splice(0, this.maxBatch));
  });

  private async execute(batch: Coalescer<I, O>['queue']): Promise<void> {
    this.inFlight++;
    let answers: Promise<O>[];
    try {
      answers = await this.run(batch.map((p) => p.item));
    } catch (error) {
      answers = batch.map(() => Promise.reject(error));
    } finally {
      this.inFlight--;
      if (this.queue.length > 0) this.schedule();
    }
    batch.forEach((p, i) => answers[i].then(p.resolve, p.reject));
  }
}
