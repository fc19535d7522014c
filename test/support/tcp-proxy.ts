import { createServer, Socket } from 'node:net';

/**
 * A TCP proxy between the service and one server (RabbitMQ), for faults no real server can be
 * asked to make on one test's connection only: `freeze()` stops forwarding what the service sends
 * (its acks, heartbeats) while the server's deliveries still reach it, so settlements commit and
 * their acks never arrive; `cut()` then closes every connection without forwarding the held bytes.
 */
export interface TcpProxy {
  port: number;
  /** `url` with its host and port replaced by the proxy's. */
  via(url: string): string;
  /** Stop reading from the service side (bytes wait in the kernel, never forwarded unless thawed). */
  freeze(): void;
  thaw(): void;
  /** Destroy every connection, both sides, dropping what was held. New connections are accepted. */
  cut(): void;
  /** Connections accepted so far. */
  accepted(): number;
  close(): Promise<void>;
}

/** `port` 0 = any free port; a given port lets a test bring a closed proxy back where it was (a broker outage and its end). */
export async function startTcpProxy(targetUrl: string, listenPort = 0): Promise<TcpProxy> {
  const target = new URL(targetUrl);
  const targetHost = target.hostname;
  const targetPort = Number(target.port || 5672);
  const pairs = new Set<[Socket, Socket]>();
  let frozen = false;
  let accepted = 0;
  const server = createServer((client) => {
    accepted++;
    const upstream = new Socket();
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    upstream.on('data', (chunk) => client.write(chunk));
    client.on('data', (chunk) => upstream.write(chunk));
    if (frozen) client.pause();
    upstream.connect(targetPort, targetHost);
  });
  await new Promise<void>((done) => server.listen(listenPort, '127.0.0.1', done));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const proxy: TcpProxy = {
    port,
    via(url: string) {
      const u = new URL(url);
      u.hostname = '127.0.0.1';
      u.port = String(port);
      return u.toString();
    },
    freeze() {
      frozen = true;
      for (const [client] of pairs) client.pause();
    },
    thaw() {
      frozen = false;
      for (const [client] of pairs) client.resume();
    },
    cut() {
      for (const [client, upstream] of [...pairs]) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    accepted: () => accepted,
    async close() {
      proxy.cut();
      await new Promise<void>((done) => server.close(() => done()));
    },
  };
  return proxy;
}
