import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { canTransition, HOLD_STATUSES, HOLD_TRANSITIONS, HoldStatus, LIVE_HOLD_STATUS, sqlStatuses } from './hold-states';

describe('hold states', () => {
  it('a hold is released once: only the live state can be cancelled or expired, and settling releases only from it', () => {
    const from = (t: keyof typeof HOLD_TRANSITIONS): readonly HoldStatus[] => HOLD_TRANSITIONS[t].from;
    expect(from('cancel')).toEqual([LIVE_HOLD_STATUS]);
    expect(from('expire')).toEqual([LIVE_HOLD_STATUS]);
    // A swept (expired) hold may still be settled late; a cancelled or settled one never again.
    expect([...from('settle')].sort()).toEqual(['expired', 'held']);
    for (const terminal of ['settled', 'cancelled'] as const) {
      for (const t of Object.keys(HOLD_TRANSITIONS) as (keyof typeof HOLD_TRANSITIONS)[]) expect(canTransition(terminal, t)).toBe(false);
    }
    expect(canTransition('expired', 'cancel')).toBe(false);
    expect(canTransition('expired', 'settle')).toBe(true);
  });

  it('names exactly the states the schema allows', () => {
    const migration = readFileSync(join(process.cwd(), 'src/database/migrations/1764000000002-holds-and-settlement-failures.ts'), 'utf8');
    const check = /status\s+varchar\(16\)\s+NOT NULL CHECK \(status IN \(([^)]*)\)\)/.exec(migration);
    expect(check?.[1]).toBe(sqlStatuses(HOLD_STATUSES).slice(1, -1));
  });
});
