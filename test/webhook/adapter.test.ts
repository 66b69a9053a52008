import { Client, Connection } from '@temporalio/client';
import { MongoClient } from 'mongodb';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../devstack/services';
import { createDataConverter } from '../../src/codec/data-converter';
import { History } from '../../src/store';
import { createWebhookAdapter, type WebhookAdapter } from '../../src/webhook/adapter';
import { freshDatabase, waitFor } from '../harness';
import { connectedEvent, disconnectedEvent, postEvents, recordDevices, startPresenceEnv, WEBHOOK_TOKEN, type PresenceTestEnv } from '../support/presence-env';

/**
 * The adapter's HTTP contract (docs/webhook-adapter.md; EMQX's retry rules in
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_bridge_http/src/emqx_bridge_http_connector.erl): 200
 * once the events are stored, 503 when they cannot be kept, a final 4xx for input that will never be valid,
 * and nothing stored for a rejected request.
 */

let env: PresenceTestEnv;

beforeAll(async () => {
  env = await startPresenceEnv();
});

afterAll(async () => {
  await env?.close();
});

const auth = { authorization: `Bearer ${WEBHOOK_TOKEN}` };

async function storedCounts(history: History): Promise<{ connections: number; devices: number }> {
  return {
    connections: await history.db.collection('connection_events').countDocuments(),
    devices: await history.db.collection('device_events').countDocuments(),
  };
}

describe('POST /emqx/events', () => {
  it('accepts the token as a Bearer header or as x-emqx-token, and stores each event once', async () => {
    const at = Date.now();
    await recordDevices(env.history, ['ad-auth']);
    const body = [connectedEvent('ad-auth', at), disconnectedEvent('ad-auth', at, at + 10)];
    expect(await postEvents(env.adapterUrl, body)).toMatchObject({ status: 200, body: { accepted: 2, stored: 2, duplicates: 0 } });
    // EMQX retries and duplicates: the same events again are accepted and not stored twice.
    expect(await postEvents(env.adapterUrl, body[0], { 'x-emqx-token': WEBHOOK_TOKEN })).toMatchObject({
      status: 200,
      body: { accepted: 1, stored: 0, duplicates: 1 },
    });
    expect(await env.ops.history('ad-auth')).toHaveLength(2);
    await waitFor(async () => (await env.ops.presenceOf('ad-auth'))?.presence === 'offline', { what: 'signalled to the device workflow' });
  });

  it('accepts unknown event types and counts them, and stores subscribe and message events', async () => {
    const at = Date.now();
    const result = await postEvents(env.adapterUrl, [
      { event: 'client.check_authz_complete', clientid: 'ad-other', timestamp: at, topic: 't', action: 'publish', result: 'allow' },
      { event: 'session.subscribed', clientid: 'ad-other', timestamp: at, topic: 'a/b', qos: 1, peerhost: '127.0.0.1' },
      { event: 'message.publish', id: '0006ABCD', clientid: 'ad-other', timestamp: at, topic: 'tele/ad-other', qos: 0, payload: '{"t":21}', publish_received_at: at },
    ]);
    expect(result).toMatchObject({ status: 200, body: { accepted: 3, stored: 2, ignored: 1 } });
    const events = await env.history.inbox.deviceEventsOf('ad-other');
    expect(events.map((e) => e.event).sort()).toEqual(['message.publish', 'session.subscribed']);
    const metrics = await (await request(`${env.adapterUrl}/metrics`)).body.text();
    expect(metrics).toMatch(/device_ops_webhook_events_ignored_total [1-9]/);
    expect(metrics).toMatch(/device_ops_webhook_events_received_total\{event="other"\} [1-9]/);
  });

  it('answers 400 naming the field, 401 without the token, 413 for a body over the limit', async () => {
    const at = Date.now();
    const bad = await postEvents(env.adapterUrl, [connectedEvent('ad-fields', at), { ...connectedEvent('ad-fields', at), connected_at: 'yesterday' }]);
    expect(bad.status).toBe(400);
    expect((bad.body as { message: string }).message).toMatch(/^\[1\]\.connected_at: /);
    const noId = await postEvents(env.adapterUrl, { ...connectedEvent('x', at), clientid: 'a/b' });
    expect((noId.body as { message: string }).message).toMatch(/^clientid: must not contain/);
    expect((await postEvents(env.adapterUrl, connectedEvent('ad-fields', at), {})).status).toBe(401);
    expect((await postEvents(env.adapterUrl, connectedEvent('ad-fields', at), { authorization: 'Bearer wrong-token-wrong-token' })).status).toBe(401);
    const small = await env.extraAdapter({ bodyLimit: 1_024 });
    expect((await postEvents(small.url, { ...connectedEvent('ad-fields', at), padding: 'x'.repeat(2_000) })).status).toBe(413);
    expect(await env.ops.history('ad-fields')).toEqual([]);
  });

  it('serves /healthz and Prometheus /metrics', async () => {
    const health = await request(`${env.adapterUrl}/healthz`);
    expect(health.statusCode).toBe(200);
    expect(await health.body.json()).toMatchObject({ status: 'ok', mongo: 'up', temporal: 'up' });
    const metrics = await (await request(`${env.adapterUrl}/metrics`)).body.text();
    for (const name of ['events_received_total', 'events_stored_total', 'events_signalled_total', 'requests_rejected_total', 'inbox_depth', 'request_duration_seconds_bucket']) {
      expect(metrics).toContain(`device_ops_webhook_${name}`);
    }
    expect(metrics).not.toContain(WEBHOOK_TOKEN);
  });
});

describe('hostile input', () => {
  it('answers 1,000 hostile requests with a 4xx each, keeps serving, and writes nothing', async () => {
    const { adapter, url } = await env.extraAdapter({ bodyLimit: 64 * 1_024 });
    const before = await storedCounts(env.history);
    const at = Date.now();
    const valid = connectedEvent('ad-hostile', at);
    // Each kind gives its own headers; `undefined` means the good token.
    const kinds: (() => { body: string; headers?: Record<string, string> })[] = [
      () => ({ body: JSON.stringify(valid), headers: { authorization: 'Bearer not-the-token-at-all' } }),
      () => ({ body: JSON.stringify(valid), headers: {} }),
      () => ({ body: JSON.stringify(valid), headers: { 'x-emqx-token': `${WEBHOOK_TOKEN}x` } }),
      () => ({ body: JSON.stringify(valid), headers: { authorization: `Basic ${WEBHOOK_TOKEN}` } }),
      () => ({ body: JSON.stringify(valid), headers: { authorization: `Bearer ${WEBHOOK_TOKEN.slice(0, -1)}` } }),
      () => ({ body: '{"event": "client.connected", "clientid": ' }),
      () => ({ body: '' }),
      () => ({ body: JSON.stringify({ ...valid, padding: 'p'.repeat(70 * 1_024) }) }),
      () => ({ body: JSON.stringify({ ...valid, connected_at: 'yesterday' }) }),
      () => ({ body: JSON.stringify({ ...valid, connected_at: -5 }) }),
      () => ({ body: JSON.stringify({ ...valid, connected_at: 1e300 }) }),
      () => ({ body: JSON.stringify({ ...valid, clientid: 'c'.repeat(5_000) }) }),
      () => ({ body: JSON.stringify({ ...valid, clientid: 'dev\u0000ice' }) }),
      () => ({ body: JSON.stringify({ ...valid, clientid: 'sensors/#' }) }),
      () => ({ body: JSON.stringify({ ...valid, clientid: ' padded ' }) }),
      () => ({ body: JSON.stringify({ ...valid, clientid: 42 }) }),
      () => ({ body: JSON.stringify({ ...valid, event: { nested: true } }) }),
      () => ({ body: JSON.stringify({ ...valid, event: undefined }) }),
      () => ({ body: JSON.stringify(disconnectedEvent('ad-hostile', at, at + 1, 'r'.repeat(1_000))) }),
      () => ({ body: '42' }),
      () => ({ body: 'null' }),
      () => ({ body: '[]' }),
      () => ({ body: JSON.stringify([valid, 'not an event']) }),
      () => ({ body: JSON.stringify(Array.from({ length: 1_001 }, () => ({ event: 'x' }))) }),
      () => ({ body: '{"__proto__": {"admin": true}, "event": "client.connected"}' }),
      () => ({ body: '{"constructor": {"prototype": {"admin": true}}, "event": "client.connected"}' }),
      () => ({ body: JSON.stringify(valid), headers: { ...auth, 'content-type': 'text/plain' } }),
    ];
    const statuses: number[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 20 }, async () => {
        while (next < 1_000) {
          const i = next++;
          const { body, headers } = kinds[i % kinds.length]!();
          const res = await request(`${url}/emqx/events`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...(headers ?? auth) },
            body,
          });
          await res.body.dump();
          statuses[i] = res.statusCode;
        }
      }),
    );
    expect(statuses).toHaveLength(1_000);
    const unexpected = statuses.map((s, i) => ({ s, kind: i % kinds.length })).filter(({ s }) => s < 400 || s >= 500);
    expect(unexpected).toEqual([]);
    expect(await storedCounts(env.history)).toEqual(before);
    let rejected = 0;
    for (const n of adapter.metrics.rejected.values()) rejected += n;
    expect(rejected).toBe(1_000);

    // Still serving, and a good request still gets through.
    expect((await request(`${url}/healthz`)).statusCode).toBe(200);
    expect((await postEvents(url, valid)).status).toBe(200);
  });
});

describe('outages', () => {
  it('keeps events while Temporal is unavailable and delivers them once an adapter can reach it', async () => {
    const database = await freshDatabase('outage');
    const history = new History(database.db);
    await history.ensureIndexes();
    await recordDevices(history, ['ad-outage']);
    const closedPort = await freePort();
    const unreachable = new Client({
      connection: Connection.lazy({ address: `127.0.0.1:${closedPort}`, connectTimeout: 500 }),
      dataConverter: createDataConverter(env.keys),
    });
    const adapters: WebhookAdapter[] = [];
    const start = async (temporal: Client): Promise<string> => {
      const adapter = createWebhookAdapter({
        history,
        temporal,
        taskQueue: env.taskQueue,
        token: WEBHOOK_TOKEN,
        signalDeadlineMs: 1_000,
        relay: { sweepIntervalMs: 100, bucketMs: 500, adoptAfterMs: 300, maxBackoffMs: 500 },
      });
      adapters.push(adapter);
      return `http://127.0.0.1:${await adapter.listen('127.0.0.1', 0)}`;
    };
    try {
      const down = await start(unreachable);
      const t = Date.now();
      const events = [connectedEvent('ad-outage', t), disconnectedEvent('ad-outage', t, t + 5), connectedEvent('ad-outage', t + 10), disconnectedEvent('ad-outage', t + 10, t + 20, 'keepalive_timeout')];
      for (const event of events) expect((await postEvents(down, event)).status).toBe(200);
      await waitFor(async () => (await (await request(`${down}/healthz`)).body.json() as { temporal: string }).temporal === 'down', { what: 'adapter notices Temporal is down' });
      expect(await history.inbox.pendingCount()).toBe(4);
      await adapters[0]!.close();

      await start(env.temporal);
      const view = await waitFor(async () => {
        const v = await env.ops.presenceOf('ad-outage');
        return v?.counters.sessionsEnded === 2 ? v : null;
      }, { what: 'the inbox drained into the device workflow', timeoutMs: 20_000 });
      expect(view).toMatchObject({ presence: 'offline', reason: 'keepalive_timeout', counters: { sessionsStarted: 2, sessionsEnded: 2 } });
      await waitFor(async () => (await history.inbox.pendingCount()) === 0, { what: 'inbox empty' });
    } finally {
      await Promise.allSettled(adapters.map((a) => a.close()));
      await unreachable.connection.close().catch(() => undefined);
      await database.close();
    }
  });

  it('answers 503 (which EMQX retries) while MongoDB is unavailable', async () => {
    const closedPort = await freePort();
    const mongo = new MongoClient(`mongodb://127.0.0.1:${closedPort}`, { serverSelectionTimeoutMS: 300 });
    const adapter = createWebhookAdapter({ history: new History(mongo.db('none')), temporal: env.temporal, taskQueue: env.taskQueue, token: WEBHOOK_TOKEN });
    try {
      const url = `http://127.0.0.1:${await adapter.listen('127.0.0.1', 0)}`;
      const answer = await postEvents(url, connectedEvent('ad-nomongo', Date.now()));
      expect(answer).toMatchObject({ status: 503, body: { error: 'unavailable' } });
      expect((await request(`${url}/healthz`)).statusCode).toBe(503);
    } finally {
      await adapter.close();
      await mongo.close();
    }
  });
});
