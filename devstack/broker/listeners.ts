import type { Server, Socket } from 'node:net';

/** A listener could not bind because something else holds the port; `variable` names what moves it. */
export class PortInUseError extends Error {
  readonly code = 'EADDRINUSE';
  constructor(
    readonly port: number,
    readonly variable?: string,
  ) {
    super(`port ${port} is already in use${variable ? `; set ${variable} to use another port` : ''}`);
    this.name = 'PortInUseError';
  }
}

/** A bound server whose open connections can be cut on close (aedes does not see idle sockets). */
export interface BoundListener {
  port: number;
  close(): Promise<void>;
}

export async function bindListener(server: Server, host: string, port: number): Promise<BoundListener> {
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      reject(err.code === 'EADDRINUSE' ? new PortInUseError(port) : err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ host, port, exclusive: true });
  });
  const address = server.address();
  const boundPort = typeof address === 'object' && address ? address.port : port;
  return {
    port: boundPort,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
