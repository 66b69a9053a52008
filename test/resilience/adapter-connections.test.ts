import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { History } from '../../src/store';
import { createWebhookAdapter, type WebhookAdapter } from '../../src/webhook/adapter';
import { freshDatabase, temporalClient, waitFor } from '../harness';
import { connectedEvent, WEBHOOK_TOKEN } from '../support/presence-env';

/**
 * Idle connections cannot starve the adapter: a flood of TCP connections that send nothing (as
 * 21,000 once exhausted its file descriptors) is capped and closed after the idle timeout, while
 * EMQX's keep-alive pool connections (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_bridge_http/src/emqx_bridge_http_connector.erl,
 * fields(config): pool_size 8, pipelining) go on being served, also after idling longer than that.
 * Raw sockets (node:net), so nothing reconnects or retries behind the test's back.
 */

const CAP = 200;
const IDLE_MS = 2_000;
const FLOOD = 2_000;

let adapter: WebhookAdapter;
let port: number;
let closeAll: () => Promise<void>;

beforeAll(async () => {
  const database = await freshDatabase('conns');
  const temporal = await temporalClient();
  const history = new History(database.db);
  await history.ensureIndexes();
  adapter = createWebhookAdapter({
    history,
    temporal: temporal.client,
    taskQueue: 'adapter-connections-unused',
    token: WEBHOOK_TOKEN,
    connections: { maxConnections: CAP, idleTimeoutMs: IDLE_MS, headersTimeoutMs: IDLE_MS },
  });
  port = await adapter.listen('127.0.0.1', 0);
  closeAll = async () => {
    await adapter.close();
    await temporal.close();
    await database.close();
  };
});

afterAll(async () => {
  await closeAll?.();
});

/** A keep-alive HTTP/1.1 connection spoken by hand: one request at a time, answers read by Content-Length. */
class RawConnection {
  private buffer = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('error', () => undefined);
  }

  static open(): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RawConnection(socket)));
      socket.once('error', reject);
    });
  }

  /** POSTs one event; resolves with the status code. */
  async post(body: unknown): Promise<number> {
    const json = JSON.stringify(body);
    this.socket.write(
      `POST /emqx/events HTTP/1.1\r\nHost: adapter\r\nConnection: keep-alive\r\nAuthorization: Bearer ${WEBHOOK_TOKEN}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(json)}\r\n\r\n${json}`,
    );
    for (;;) {
      const text = this.buffer.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end >= 0) {
        const length = Number(/content-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
        if (this.buffer.length >= end + 4 + length) {
          this.buffer = this.buffer.subarray(end + 4 + length);
          return Number(text.slice(9, 12));
        }
      }
      if (this.closed) throw new Error('connection closed before the answer');
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = undefined;
    }
  }
}

function connections(): Promise<number> {
  return new Promise((resolve, reject) => adapter.app.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

describe('webhook adapter connection limits', () => {
  it('serves EMQX-like keep-alive connections through a flood of idle sockets, and closes the idle ones', async () => {
    // EMQX's pool: 8 connections, opened before the flood.
    const pool = await Promise.all(Array.from({ length: 8 }, () => RawConnection.open()));
    let n = 0;
    const event = (): Record<string, unknown> => connectedEvent(`conn-dev-${n % 50}`, 1_000_000 + n++);
    expect(await Promise.all(pool.map((c) => c.post(event())))).toEqual(pool.map(() => 200));

    // The flood: sockets that connect and send nothing.
    const flood: net.Socket[] = [];
    const floodClosed = new Set<net.Socket>();
    const openedAt = Date.now();
    // In waves, so the kernel's accept backlog (not the adapter) never has to refuse one.
    for (let wave = 0; wave < FLOOD / 100; wave++) {
      await Promise.all(
        Array.from({ length: 100 }, async () => {
          const socket = net.connect(port, '127.0.0.1');
          flood.push(socket);
          socket.on('error', () => undefined);
          socket.on('close', () => floodClosed.add(socket));
          await new Promise<void>((resolve) => {
            socket.once('connect', () => resolve());
            socket.once('close', () => resolve());
          });
        }),
      );
    }
    // The adapter holds at most CAP connections, whatever was attempted.
    expect(await connections()).toBeLessThanOrEqual(CAP);

    // The pool is served during the flood, request after request.
    for (let round = 0; round < 5; round++) expect(await Promise.all(pool.map((c) => c.post(event())))).toEqual(pool.map(() => 200));

    // Every idle socket is closed by the adapter, none long after the idle timeout.
    await waitFor(() => floodClosed.size === FLOOD, { timeoutMs: IDLE_MS * 5, intervalMs: 100, what: `every idle socket closed (${floodClosed.size} of ${FLOOD} so far)` });
    expect(Date.now() - openedAt).toBeLessThan(IDLE_MS * 5);

    // Idle for longer than the idle timeout, the pool's connections are still open and served
    // (keep-alive between requests is governed by the keep-alive timeout, 75 s by default).
    await waitFor(() => Date.now() - openedAt > IDLE_MS * 2, { timeoutMs: IDLE_MS * 3, intervalMs: 100, what: 'the pool to idle' });
    expect(pool.every((c) => !c.closed)).toBe(true);
    expect(await Promise.all(pool.map((c) => c.post(event())))).toEqual(pool.map(() => 200));
    // And a new connection gets in.
    const late = await RawConnection.open();
    expect(await late.post(event())).toBe(200);
    for (const c of [...pool, late]) c.socket.destroy();
  });

  it('closes a connection whose headers never complete', async () => {
    const slow = await RawConnection.open();
    const started = Date.now();
    slow.socket.write('POST /emqx/events HTTP/1.1\r\nHost: adapter\r\n');
    await waitFor(() => slow.closed, { timeoutMs: IDLE_MS * 3, what: 'the slow connection closed' });
    expect(Date.now() - started).toBeLessThan(IDLE_MS * 3);
  });

  it('closes the connection after answering a caller without the token', async () => {
    const stranger = await RawConnection.open();
    stranger.socket.write('POST /emqx/events HTTP/1.1\r\nHost: adapter\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}');
    await waitFor(() => stranger.closed, { timeoutMs: IDLE_MS, what: 'the connection closed after the 401' });
  });
});
