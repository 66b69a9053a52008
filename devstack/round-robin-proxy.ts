import net from 'node:net';

/**
 * A small round-robin TCP proxy for the dev stack: several webhook adapters behind the one URL that
 * EMQX's HTTP action takes (a load balancer or a Kubernetes Service in production). Each incoming
 * connection goes to the next backend; a backend that refuses (down, being restarted) is skipped
 * for the next one, so a killed adapter costs only the requests in flight on its connections,
 * which EMQX retries on a new connection.
 */
export interface RoundRobinProxy {
  port: number;
  /** Connections handed to each backend port so far. */
  connections(): Record<number, number>;
  close(): Promise<void>;
}

export async function startRoundRobinProxy(options: { host: string; port: number; backends: readonly number[] }): Promise<RoundRobinProxy> {
  if (options.backends.length === 0) throw new Error('round-robin proxy: at least one backend port is needed');
  let next = 0;
  const handed: Record<number, number> = {};
  const sockets = new Set<net.Socket>();

  /** Connects to the backends in turn, starting at the next one; undefined when none answers. */
  const connectBackend = async (): Promise<net.Socket | undefined> => {
    for (let tried = 0; tried < options.backends.length; tried++) {
      const port = options.backends[next % options.backends.length] as number;
      next++;
      const upstream = await new Promise<net.Socket | undefined>((resolve) => {
        const socket = net.connect({ host: options.host, port });
        socket.once('connect', () => resolve(socket));
        socket.once('error', () => {
          socket.destroy();
          resolve(undefined);
        });
      });
      if (upstream) {
        handed[port] = (handed[port] ?? 0) + 1;
        return upstream;
      }
    }
    return undefined;
  };

  const server = net.createServer((client) => {
    sockets.add(client);
    client.once('close', () => sockets.delete(client));
    client.on('error', () => client.destroy());
    // Nothing the client sends is lost while the backend connects: the socket buffers it.
    client.pause();
    void connectBackend().then((upstream) => {
      if (!upstream) return void client.destroy();
      if (client.destroyed) return void upstream.destroy();
      sockets.add(upstream);
      upstream.once('close', () => {
        sockets.delete(upstream);
        client.destroy();
      });
      upstream.on('error', () => upstream.destroy());
      client.once('close', () => upstream.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : options.port,
    connections: () => ({ ...handed }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
