import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { verifyWebhookSignature } from '../../client/events';

export interface Received {
  path: string;
  id: string;
  type: string;
  body: { id: string; type: string; created_at: string; data: Record<string, string> };
  raw: string;
  verified: boolean;
  at: number;
}

export type Behaviour = (req: IncomingMessage, res: ServerResponse, attempt: number) => void;

/**
 * A webhook receiver on 127.0.0.1: every request is kept with whether its signature verifies
 * (with the client's verifyWebhookSignature). Each path answers as its behaviour says (200 by default).
 */
export async function startReceiver(secretOf: (path: string) => string | undefined) {
  const received: Received[] = [];
  const behaviours = new Map<string, Behaviour>();
  const attempts = new Map<string, number>();
  const held = new Set<ServerResponse>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      const path = req.url ?? '/';
      const secret = secretOf(path) ?? '';
      let body: Received['body'];
      try {
        body = JSON.parse(raw) as Received['body'];
      } catch {
        body = { id: '', type: '', created_at: '', data: {} };
      }
      received.push({
        path,
        id: String(req.headers['x-credits-event-id']),
        type: String(req.headers['x-credits-event-type']),
        body,
        raw,
        verified:
          verifyWebhookSignature(raw, req.headers['x-credits-signature'] as string | undefined, secret) &&
          body.id === req.headers['x-credits-event-id'],
        at: Date.now(),
      });
      const n = (attempts.get(path) ?? 0) + 1;
      attempts.set(path, n);
      const behave = behaviours.get(path);
      if (behave) behave(req, res, n);
      else res.writeHead(200).end('ok');
    });
  });
  server.on('connection', (socket) => socket.on('error', () => undefined));
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: (path: string) => `http://127.0.0.1:${port}${path}`,
    received,
    on(path: string, behaviour: Behaviour) {
      behaviours.set(path, behaviour);
    },
    /** Never answers (until close). */
    hang: ((_req, res) => held.add(res)) as Behaviour,
    at: (path: string) => received.filter((r) => r.path === path),
    async close() {
      for (const res of held) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
}
export type Receiver = Awaited<ReturnType<typeof startReceiver>>;
