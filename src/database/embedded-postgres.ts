import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

export interface EmbeddedPostgres {
  url: string;
  /**
   * True when the directory held no schema yet (no `migrations` table) as it was opened: the
   * migrations of this start are the ones creating it. A database an operator emptied still has
   * its migrations table, so it is not new.
   */
  isNew: boolean;
  close(): Promise<void>;
}

/**
 * Starts PostgreSQL-in-WebAssembly (PGlite) persisted in `dataDir` and exposes it on a loopback
 * port, so the app reaches it with the ordinary `pg` driver, the same TypeORM code and the same
 * migrations as a real server. PGlite has one backend: callers must use a pool of one connection
 * so that whole transactions are serialized (see database.options.ts).
 */
export async function startEmbeddedPostgres(dataDir: string): Promise<EmbeddedPostgres> {
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  const unlock = lockDataDir(dir);
  let db: PGlite | undefined;
  let server: PGLiteSocketServer | undefined;
  let isNew: boolean;
  try {
    db = await PGlite.create(dir);
    // Asked before anyone connects, so the answer is about the directory, not about this start.
    const { rows } = await db.query<{ fresh: boolean }>(`SELECT to_regclass('public.migrations') IS NULL AS fresh`);
    isNew = rows[0]?.fresh === true;
    // A few connections are accepted (the app's pool of one, a migration run, a health probe);
    // the server queues their queries onto the single backend.
    server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 8 });
    await server.start();
  } catch (error) {
    await db?.close().catch(() => undefined);
    unlock();
    throw error;
  }
  const [host, port] = server.getServerConn().split(':');
  let closed = false;
  return {
    url: `postgres://postgres@${host}:${port}/postgres`,
    isNew,
    async close() {
      if (closed) return;
      closed = true;
      try {
        await server.stop();
        await db.close();
      } finally {
        unlock();
      }
    },
  };
}

const LOCK_FILE = 'credits-service.lock';

/**
 * PGlite has no postmaster guarding its directory: a second process (`npm run seed:demo` beside a
 * running `npm start`, or a second server) would open the same files as a second PostgreSQL,
 * whose writes the first never sees and may overwrite. A lock file holding the owner's pid refuses
 * that second opener. A lock whose owner is gone (killed) is taken over; so is one naming our own
 * pid, which can only be left from an earlier run (a container restarted as pid 1).
 */
function lockDataDir(dir: string): () => void {
  const path = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: 'wx' });
      return () => rmSync(path, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    if (owner !== process.pid && isRunning(owner)) {
      throw new Error(
        `the embedded database in ${dir} is in use by process ${owner}: stop that process first ` +
          `(or remove ${path} if no such process is a credits-service)`,
      );
    }
    rmSync(path, { force: true });
  }
  throw new Error(`could not lock the embedded database in ${dir} (${path})`);
}

function isRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
