import { describe, expect, it } from '@jest/globals';
import { sameHash, sha256 } from './keys.service';

describe('sameHash (constant-time comparison of secret hashes)', () => {
  it('is true only for the same 32-byte digest', () => {
    const a = sha256('ck_s_one');
    expect(sameHash(a, sha256('ck_s_one'))).toBe(true);
    expect(sameHash(a, sha256('ck_s_two'))).toBe(false);
    // Only the last character differs: still false (and compared over all 32 bytes).
    const last = a.slice(0, 63) + (a[63] === '0' ? '1' : '0');
    expect(sameHash(a, last)).toBe(false);
  });

  it('never throws on a digest of another length (timingSafeEqual would): false', () => {
    expect(sameHash(sha256('x'), 'abcd')).toBe(false);
    expect(sameHash('', '')).toBe(false);
    expect(sameHash('zz'.repeat(32), 'zz'.repeat(32))).toBe(false);
  });
});
