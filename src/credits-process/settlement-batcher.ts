import type { EndMultiModelDto } from './dto/credits-process.dto';
import type { SettlementResult } from './credits-process.service';

type SettleBatch = (dtos: EndMultiModelDto[]) => Promise<PromiseSettledResult<SettlementResult>[]>;

interface Pending {
  dto: EndMultiModelDto;
  resolve(result: SettlementResult): void;
  reject(reason: unknown): void;
}

/**
 * Groups queued settlements that arrive together into one batch (one transaction), without
 * ever waiting on purpose: the first message is flushed on the next turn of the event loop, and
 * while a batch is being written the next messages gather for the following one. Under load the
 * batches grow to `maxBatch` (the consumer's prefetch); a lone message goes out at once.
 */
export class SettlementBatcher {
  private pending: Pending[] = [];
  private scheduled = false;
  private flushing = false;

  constructor(
    private readonly settleBatch: SettleBatch,
    private readonly maxBatch: number,
  ) {}

  submit(dto: EndMultiModelDto): Promise<SettlementResult> {
    return new Promise((resolve, reject) => {
      this.pending.push({ dto, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.flushing) return;
    this.scheduled = true;
    setImmediate(() => void this.flush());
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    this.flushing = true;
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0, this.maxBatch);
        try {
          const results = await this.settleBatch(batch.map((p) => p.dto));
          results.forEach((r, i) => (r.status === 'fulfilled' ? batch[i].resolve(r.value) : batch[i].reject(r.reason)));
        } catch (error) {
          for (const p of batch) p.reject(error);
        }
      }
    } finally {
      this.flushing = false;
    }
  }
}
