import { AsyncLocalStorage } from 'node:async_hooks';
import { describe, expect, it, jest } from '@jest/globals';
import { Coalescer } from './coalescer';

/** A batch runner that records each batch and answers when the test says so. */
function recorder() {
  const batches: number[][] = [];
  const gates: (() => void)[] = [];
  const run = async (items: number[]): Promise<Promise<number>[]> => {
    batches.push(items);
    await new Promise<void>((release) => gates.push(release));
    return items.map((n) => (n < 0 ? Promise.reject(new Error(`bad ${n}`)) : Promise.resolve(n * 10)));
  };
  /** Resolves once `count` batches have started. */
  const started = async (count: number) => {
    while (batches.length < count) await new Promise((r) => setImmediate(r));
  };
  return { batches, gates, run, started };
}

describe('Coalescer', () => {
  it('sends a lone item at once, in a batch of one', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, 10, 1);
    const answer = c.submit(1);
    await r.started(1);
    r.gates[0]();
    await expect(answer).resolves.toBe(10);
    expect(r.batches).toEqual([[1]]);
  });

  it('puts the items of one event-loop turn into one batch, and answers each in order', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, 10, 1);
    const answers = [1, 2, 3].map((n) => c.submit(n));
    await r.started(1);
    r.gates[0]();
    await expect(Promise.all(answers)).resolves.toEqual([10, 20, 30]);
    expect(r.batches).toEqual([[1, 2, 3]]);
  });

  it('gathers what arrives while the batches in flight run, up to maxBatch per batch', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, 3, 1);
    const first = c.submit(1);
    await r.started(1);
    const later = [2, 3, 4, 5, 6].map((n) => c.submit(n));
    expect(c.waiting).toBe(5);
    r.gates[0]();
    await first;
    await r.started(2);
    r.gates[1]();
    await r.started(3);
    r.gates[2]();
    await expect(Promise.all(later)).resolves.toEqual([20, 30, 40, 50, 60]);
    expect(r.batches).toEqual([[1], [2, 3, 4], [5, 6]]);
  });

  it('runs at most maxInFlight batches at once', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, 1, 2);
    const answers = [1, 2, 3].map((n) => c.submit(n));
    await r.started(2);
    // Give it every chance to start a third batch: it must not.
    for (let i = 0; i < 5; i++) await new Promise((res) => setImmediate(res));
    expect(r.batches).toEqual([[1], [2]]);
    r.gates[0]();
    await r.started(3);
    r.gates[1]();
    r.gates[2]();
    await expect(Promise.all(answers)).resolves.toEqual([10, 20, 30]);
  });

  it('rejects only the items the runner failed, and every item of a batch whose runner threw', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, 10, 1);
    const answers = [1, -2, 3].map((n) => c.submit(n));
    await r.started(1);
    r.gates[0]();
    await expect(answers[0]).resolves.toBe(10);
    await expect(answers[1]).rejects.toThrow('bad -2');
    await expect(answers[2]).resolves.toBe(30);

    const failing = new Coalescer<number, number>(() => Promise.reject(new Error('database down')), 10, 1);
    const both = [failing.submit(1), failing.submit(2)];
    await expect(both[0]).rejects.toThrow('database down');
    await expect(both[1]).rejects.toThrow('database down');
  });

  it('answers each item when its own answer settles, and frees the slot when the batch work is done', async () => {
    let releaseSlow!: () => void;
    const slow = new Promise<number>((resolve) => (releaseSlow = () => resolve(99)));
    const batches: number[][] = [];
    const c = new Coalescer<number, number>(
      async (items) => {
        batches.push(items);
        return items.map((n) => (n === 2 ? slow : Promise.resolve(n * 10)));
      },
      10,
      1,
    );
    const [one, two, three] = [1, 2, 3].map((n) => c.submit(n));
    await expect(one).resolves.toBe(10);
    await expect(three).resolves.toBe(30);
    // Item 2 is still pending, yet the only slot is free: a new item goes out at once.
    await expect(c.submit(4)).resolves.toBe(40);
    expect(batches).toEqual([[1, 2, 3], [4]]);
    releaseSlow();
    await expect(two).resolves.toBe(99);
  });

  it('refuses a batch size or concurrency below one', () => {
    expect(() => new Coalescer(async () => [], 0, 1)).toThrow(RangeError);
    expect(() => new Coalescer(async () => [], 1, 0)).toThrow(new RangeError('maxBatch and maxInFlight must be at least 1'));
  });

  it('takes exactly maxBatch items per batch: a batch of one when maxBatch is 1', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, 1, 3);
    const answers = [1, 2, 3].map((n) => c.submit(n));
    await r.started(3);
    expect(r.batches).toEqual([[1], [2], [3]]);
    r.gates.forEach((release) => release());
    await expect(Promise.all(answers)).resolves.toEqual([10, 20, 30]);
    expect(c.waiting).toBe(0);
  });

  it('never calls the runner with an empty batch, even with free slots', async () => {
    const r = recorder();
    const c = new Coalescer(r.run, 10, 4);
    const answer = c.submit(1);
    await r.started(1);
    for (let i = 0; i < 5; i++) await new Promise((res) => setImmediate(res));
    expect(r.batches).toEqual([[1]]);
    r.gates[0]();
    await expect(answer).resolves.toBe(10);
  });

  it('keeps serving after a runner failure: the slot is freed and the waiting items go out', async () => {
    let calls = 0;
    const c = new Coalescer<number, number>(
      async (items) => {
        calls++;
        if (calls === 1) {
          await new Promise((res) => setImmediate(res));
          throw new Error('first batch fails');
        }
        return items.map((n) => Promise.resolve(n));
      },
      10,
      1,
    );
    const first = c.submit(1);
    await new Promise((res) => setImmediate(res));
    const second = c.submit(2); // arrives while the failing batch holds the only slot
    await expect(first).rejects.toThrow('first batch fails');
    await expect(second).resolves.toBe(2);
    expect(calls).toBe(2);
  });

  it("runs a batch outside its callers' async context, and resumes each caller in its own", async () => {
    const als = new AsyncLocalStorage<string>();
    const seen: (string | undefined)[] = [];
    const c = new Coalescer<number, number>(
      async (items) => {
        seen.push(als.getStore());
        return items.map((n) => Promise.resolve(n));
      },
      10,
      1,
    );
    const after = await Promise.all(
      ['request-a', 'request-b'].map((id, n) => als.run(id, async () => [await c.submit(n), als.getStore()] as const)),
    );
    expect(seen).toEqual([undefined]);
    expect(after).toEqual([
      [0, 'request-a'],
      [1, 'request-b'],
    ]);
  });

  it('wakes up once per turn, and not at all while every slot is busy or nothing waits', async () => {
    // Each wake-up is a setImmediate on the hot path of every request: spurious ones cost CPU.
    const r = recorder();
    const c = new Coalescer(r.run, 10, 1);
    const wakeUps = jest.spyOn(globalThis, 'setImmediate');
    try {
      const first = [1, 2, 3].map((n) => c.submit(n));
      expect(wakeUps).toHaveBeenCalledTimes(1);
      await r.started(1);
      wakeUps.mockClear();
      const later = [4, 5].map((n) => c.submit(n)); // the only slot is busy
      expect(wakeUps).not.toHaveBeenCalled();
      r.gates[0]();
      await Promise.all(first);
      expect(wakeUps).toHaveBeenCalledTimes(1); // the slot came free with items waiting
      await r.started(2);
      wakeUps.mockClear();
      r.gates[1]();
      await Promise.all(later);
      expect(wakeUps).not.toHaveBeenCalled(); // the slot came free with nothing waiting
      expect(r.batches).toEqual([
        [1, 2, 3],
        [4, 5],
      ]);
    } finally {
      wakeUps.mockRestore();
    }
  });
});
