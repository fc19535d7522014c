import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';

export interface EmbeddedPostgres {
  url: string;
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
  const db = await PGlite.create(dir);
  // A few connections are accepted (the app's pool of one, a migration run, a health probe);
  // the server queues their queries onto the single backend.
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: 8 });
  await server.start();
  const [host, port] = server.getServerConn().split(':');
  let closed = false;
  return {
    url: `postgres://postgres@${host}:${port}/postgres`,
    async close() {
      if (closed) return;
      closed = true;
      await server.stop();
      await db.close();
    },
  };
}
