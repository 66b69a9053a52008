import { Client, type Dispatcher } from 'undici';

/**
 * An HTTP connector's connections, opened and used the way EMQX's HTTP connector does through ehttpc:
 * `pool_size` workers, each with one keep-alive connection, and each sending up to `enable_pipelining`
 * requests on its connection before the first is answered (HTTP/1.1 pipelining); further requests wait
 * in that worker's queue. A request goes to a random worker (`pool_type = random`, the default) or to
 * the worker its client id hashes to (`hash`).
 * - https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_bridge_http/src/emqx_bridge_http_connector.erl
 *   fields(config) (defaults: pool_size 8, enable_pipelining 100, pool_type random), on_start/2 (the
 *   pool options), resolve_pool_worker/2 (random or hash pick).
 * - https://github.com/emqx/ehttpc/blob/0.7.3/src/ehttpc.erl maybe_shoot/1 and check_gun_limit/2: a
 *   worker sends while its sent-but-unanswered requests are fewer than `enable_pipelining`.
 */

export interface ConnectionPoolSettings {
  /** scheme://host:port of the connector's URL. */
  origin: string;
  poolSize: number;
  pipelining: number;
  poolType: 'random' | 'hash';
  connectTimeoutMs: number;
}

/** ehttpc_sup:start_pool/2 with EMQX's defaults (emqx_bridge_http_connector.erl fields(config)). */
export const DEFAULT_POOL_SIZE = 8;
export const DEFAULT_PIPELINING = 100;
export const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;

/** EMQX's HTTP connector keeps each connection alive for 30 s between requests (on_start/2: `{keepalive, 30_000}`). */
const KEEPALIVE_MS = 30_000;

export class HttpConnectionPool {
  private readonly workers: Client[];

  constructor(readonly settings: ConnectionPoolSettings) {
    this.workers = Array.from(
      { length: settings.poolSize },
      () =>
        new Client(settings.origin, {
          pipelining: settings.pipelining,
          connect: { timeout: settings.connectTimeoutMs },
          keepAliveTimeout: KEEPALIVE_MS,
          keepAliveMaxTimeout: KEEPALIVE_MS,
        }),
    );
  }

  /** The worker (one connection) that sends the request of `clientid`. */
  pick(clientid: string): Dispatcher {
    const index = this.settings.poolType === 'hash' ? stringHash(clientid) % this.workers.length : Math.floor(Math.random() * this.workers.length);
    return this.workers[index] as Client;
  }

  sameSettings(other: ConnectionPoolSettings): boolean {
    const mine = this.settings;
    return (
      mine.origin === other.origin &&
      mine.poolSize === other.poolSize &&
      mine.pipelining === other.pipelining &&
      mine.poolType === other.poolType &&
      mine.connectTimeoutMs === other.connectTimeoutMs
    );
  }

  /** Closes every connection once the requests already sent are answered. */
  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.close()));
  }

  /** Closes every connection now, failing requests in flight. */
  async destroy(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.destroy()));
  }
}

/** FNV-1a: a stable, well-spread hash of a client id. */
function stringHash(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
