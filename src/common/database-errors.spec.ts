import { describe, expect, it } from '@jest/globals';
import { isDatabaseUnavailable } from './database-errors';

const pgError = (message: string, code: string, severity: string) => Object.assign(new Error(message), { code, severity });

describe('isDatabaseUnavailable', () => {
  it('treats a refused connection (FATAL 55000, database closed to connections) as unavailable', () => {
    expect(isDatabaseUnavailable(pgError('database "x" is not currently accepting connections', '55000', 'FATAL'))).toBe(true);
  });

  it('treats a terminated session as unavailable, also when TypeORM wraps it', () => {
    const driverError = pgError('terminating connection due to administrator command', '57P01', 'FATAL');
    expect(isDatabaseUnavailable(Object.assign(new Error('QueryFailedError'), { driverError }))).toBe(true);
  });

  it('does not hide a wrong query (ERROR severity) behind 503', () => {
    expect(isDatabaseUnavailable(pgError('duplicate key value violates unique constraint', '23505', 'ERROR'))).toBe(false);
    expect(isDatabaseUnavailable(pgError('currval of sequence "s" is not yet defined in this session', '55000', 'ERROR'))).toBe(false);
  });
});
