/**
 * An `EmqxClient` wired to undici's MockAgent, for unit tests of one module: every request must be
 * intercepted, nothing reaches the network.
 */
import { MockAgent, type MockPool } from 'undici';
import { createEmqxClient, type EmqxClient } from '../../src/emqx';

export const ORIGIN = 'http://emqx.test';
export const BASE = '/api/v5';
export const API_KEY = 'device-ops-key';
export const API_SECRET = 'sup3r-s3cret-value';

export interface MockEmqx {
  client: EmqxClient;
  agent: MockAgent;
  /** Intercepts `method` on `path` (below the base URL; the query string is not compared). */
  on(method: string, path: string | RegExp): ReturnType<MockPool['intercept']>;
  close(): Promise<void>;
}

function pathMatcher(path: string | RegExp): (actual: string) => boolean {
  return (actual) => {
    const [pathname = ''] = actual.split('?');
    return typeof path === 'string' ? pathname === BASE + path : path.test(pathname.slice(BASE.length));
  };
}

export function mockEmqx(opts: { timeoutMs?: number } = {}): MockEmqx {
  const agent = new MockAgent();
  agent.disableNetConnect();
  const pool = agent.get(ORIGIN);
  const client = createEmqxClient({ baseUrl: `${ORIGIN}${BASE}`, apiKey: API_KEY, apiSecret: API_SECRET, dispatcher: agent, ...opts });
  return {
    client,
    agent,
    on: (method, path) => pool.intercept({ method, path: pathMatcher(path) }),
    async close() {
      await client.close();
      await agent.close();
    },
  };
}

/** The query of a mocked request, as a plain object of arrays. */
export function queryOf(path: string): Record<string, string[]> {
  const params = new URLSearchParams(path.split('?')[1] ?? '');
  const out: Record<string, string[]> = {};
  for (const [k, v] of params) (out[k] ??= []).push(v);
  return out;
}

export const json = { headers: { 'content-type': 'application/json' } };
