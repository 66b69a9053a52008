import http from 'node:http';
import { Agent, request } from 'undici';
import { describe, expect, it } from 'vitest';
import { startRoundRobinProxy } from '../../devstack/round-robin-proxy';
import { freePort } from '../../devstack/services';

/** The dev stack's round-robin TCP proxy in front of several webhook adapters (docs/local-stack.md). */

async function backend(name: string): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => res.end(name));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('round-robin proxy', () => {
  it('spreads new connections over the backends and skips one that is down', async () => {
    const [a, b] = await Promise.all([backend('a'), backend('b')]);
    const proxy = await startRoundRobinProxy({ host: '127.0.0.1', port: await freePort(), backends: [a.port, b.port] });
    // A new connection per request, as after a connection reset.
    const fresh = new Agent({ pipelining: 0 });
    const ask = async (): Promise<string> => (await request(`http://127.0.0.1:${proxy.port}/`, { dispatcher: fresh, reset: true })).body.text();
    try {
      const answers = [];
      for (let i = 0; i < 6; i++) answers.push(await ask());
      expect(answers.sort()).toEqual(['a', 'a', 'a', 'b', 'b', 'b']);

      await a.close();
      const after = [];
      for (let i = 0; i < 4; i++) after.push(await ask());
      expect(after).toEqual(['b', 'b', 'b', 'b']);
      expect(proxy.connections()).toEqual({ [a.port]: 3, [b.port]: 7 });
    } finally {
      await fresh.close();
      await proxy.close();
      await b.close();
    }
  });
});
