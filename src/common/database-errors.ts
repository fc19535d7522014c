/** True when a database error means "the database is unreachable", not "this query is wrong". */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const e = error as Error & { code?: string; severity?: string; driverError?: unknown };
  if (e.driverError && e.driverError !== error && isDatabaseUnavailable(e.driverError)) return true;
  // A FATAL error ends the session: the server refused or dropped the connection (e.g. 55000
  // "database … is not currently accepting connections" while it is closed to connections), so
  // nothing of this request was committed. A wrong query is only ever ERROR.
  if (e.severity === 'FATAL' || e.severity === 'PANIC') return true;
  const code = e.code ?? '';
  // 08xxx connection exceptions, 57P0x operator intervention (shutdown, terminated), 53300 too many connections.
  if (
    /^(08|57P0)/.test(code) ||
    code === '53300' ||
    code === 'ECONNREFUSED' ||
    code === 'ECONNRESET' ||
    code === 'EPIPE' ||
    code === 'ETIMEDOUT'
  ) {
    return true;
  }
  return /Connection terminated|connect ECONNREFUSED|timeout exceeded when trying to connect|Client has encountered a connection error|Connection ended unexpectedly|the database system is (starting up|shutting down)/i.test(
    e.message,
  );
}

/** PostgreSQL unique_violation on the named constraint (or any, when none is named). */
export function isUniqueViolation(error: unknown, constraint?: string): boolean {
  const e = error as { code?: string; constraint?: string; driverError?: { code?: string; constraint?: string } };
  const code = e?.code ?? e?.driverError?.code;
  const name = e?.constraint ?? e?.driverError?.constraint;
  return code === '23505' && (constraint === undefined || name === constraint);
}

/** PostgreSQL foreign_key_violation on the named constraint. */
export function isForeignKeyViolation(error: unknown, constraint: string): boolean {
  const e = error as { code?: string; constraint?: string; driverError?: { code?: string; constraint?: string } };
  return (e?.code ?? e?.driverError?.code) === '23503' && (e?.constraint ?? e?.driverError?.constraint) === constraint;
}

/** deadlock_detected or serialization_failure: the transaction was rolled back whole; retrying is safe. */
export function isDeadlock(error: unknown): boolean {
  const e = error as { code?: string; driverError?: { code?: string } };
  const code = e?.code ?? e?.driverError?.code;
  return code === '40P01' || code === '40001';
}
