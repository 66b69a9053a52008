/**
 * The project's EMQX client (and the activities that use proxy subscriptions) against answers
 * written from EMQX 5.8.9's source, served over real HTTP (emqx-shapes.ts).
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { createDeviceAdminActivities } from '../../src/activities/device-admin';
import { createPresenceActivities } from '../../src/activities/presence';
import type { DeviceRecord } from '../../src/domain/schemas/device';
import { EmqxNotFoundError, type EmqxClient } from '../../src/emqx';
import type { History } from '../../src/store';
import {
  bareSessionRow,
  CLIENTID_NOT_FOUND,
  connectedClient,
  EmqxShapeServer,
  offlineSessionFromChannel,
  offlineSessionFromMetadata,
  subscribeBatchBody,
  subscribeSuccess,
  type ShapeHandler,
  type SubscribeRequestItem,
} from './emqx-shapes';

let server: EmqxShapeServer | undefined;
let client: EmqxClient | undefined;

async function serve(handler: ShapeHandler): Promise<{ server: EmqxShapeServer; emqx: EmqxClient }> {
  server = await EmqxShapeServer.start(handler);
  client = server.client();
  return { server, emqx: client };
}

afterEach(async () => {
  await client?.close();
  await server?.close();
  client = undefined;
  server = undefined;
});

/** Answers `subscribe/bulk` as EMQX does, failing the topics `reasonFor` names. */
function bulkSubscribeHandler(reasonFor: (item: SubscribeRequestItem) => string | undefined, online = true): ShapeHandler {
  return ({ method, path, body }) => {
    const bulk = /^\/clients\/([^/]+)\/subscribe\/bulk$/.exec(path);
    if (method === 'POST' && bulk) {
      if (!online) return { status: 404, body: CLIENTID_NOT_FOUND };
      return { status: 200, body: subscribeBatchBody(decodeURIComponent(bulk[1] ?? ''), body as SubscribeRequestItem[], reasonFor) };
    }
    const one = /^\/clients\/([^/]+)$/.exec(path);
    if (method === 'GET' && one) return { status: 200, body: connectedClient(decodeURIComponent(one[1] ?? '')) };
    return { status: 404, body: { code: 'NOT_FOUND', message: 'Request path not found' } };
  };
}

describe('POST /clients/{clientid}/subscribe/bulk (emqx_mgmt_api_clients.erl subscribe_batch/1, emqx_mgmt_util.erl batch_operation/3)', () => {
  it('reads the plain list EMQX answers when every topic succeeded', async () => {
    const { emqx } = await serve(bulkSubscribeHandler(() => undefined));
    const result = await emqx.subscribeBulk('c1', [{ topic: 'a/1', qos: 1 }, { topic: 'a/2' }]);
    expect(result).toEqual({
      succeeded: [subscribeSuccess('c1', { topic: 'a/1', qos: 1 }), subscribeSuccess('c1', { topic: 'a/2' })],
      failed: [],
      clientGone: false,
    });
  });

  it('reads {succeed, failed} with [ClientID, Topic, Opts] data: channel_not_found is the client gone mid-call', async () => {
    const { emqx } = await serve(bulkSubscribeHandler((item) => (item.topic === 'a/1' ? undefined : 'channel_not_found')));
    const result = await emqx.subscribeBulk('c1', [{ topic: 'a/1', qos: 1 }, { topic: 'a/2' }, { topic: 'a/3' }]);
    expect(result.succeeded.map((s) => s.topic)).toEqual(['a/1']);
    expect(result.failed).toEqual([
      { topic: 'a/3', reason: 'channel_not_found', clientGone: true },
      { topic: 'a/2', reason: 'channel_not_found', clientGone: true },
    ]);
    expect(result.clientGone).toBe(true);
  });

  it('tells a rejected topic (invalid_subopts_nl, invalid_topic_filter) from a client that left', async () => {
    const { emqx } = await serve(
      bulkSubscribeHandler((item) =>
        item.nl === 1 ? 'invalid_subopts_nl' : item.topic === '$share/g' ? '{invalid_topic_filter,<<"$share/g">>}' : undefined,
      ),
    );
    const result = await emqx.subscribeBulk('c1', [{ topic: 'a' }, { topic: '$share/g/x', nl: 1 }, { topic: '$share/g' }]);
    expect(result).toEqual({
      succeeded: [subscribeSuccess('c1', { topic: 'a' })],
      failed: [
        { topic: '$share/g', reason: '{invalid_topic_filter,<<"$share/g">>}', clientGone: false },
        { topic: '$share/g/x', reason: 'invalid_subopts_nl', clientGone: false },
      ],
      clientGone: false,
    });
  });

  it('throws EmqxNotFoundError CLIENTID_NOT_FOUND when the client was gone before the call', async () => {
    const { emqx } = await serve(bulkSubscribeHandler(() => undefined, false));
    await expect(emqx.subscribeBulk('c1', [{ topic: 'a' }])).rejects.toBeInstanceOf(EmqxNotFoundError);
  });

  it('unsubscribes in bulk with 204, and throws EmqxNotFoundError on 404 (unsubscribe_batch/1)', async () => {
    let online = true;
    const { emqx, server: shapes } = await serve(({ path }) =>
      path === '/clients/c1/unsubscribe/bulk' && online ? { status: 204 } : { status: 404, body: CLIENTID_NOT_FOUND },
    );
    await emqx.unsubscribeBulk('c1', ['a', 'b']);
    expect(shapes.requests[0]?.body).toEqual([{ topic: 'a' }, { topic: 'b' }]);
    online = false;
    await expect(emqx.unsubscribeBulk('c1', ['a'])).rejects.toMatchObject({ code: 'CLIENTID_NOT_FOUND' });
  });
});

describe('activities that subscribe on behalf of a device', () => {
  const record: DeviceRecord = {
    clientId: 'd1',
    username: 'd1',
    acl: [],
    subscriptions: [
      { topic: 'devices/d1/cmd', qos: 1 },
      { topic: 'devices/d1/cfg', qos: 1 },
    ],
    tags: [],
    status: 'active',
    provisionedAt: '2024-01-01T00:00:00.000Z',
    updatedAt: '2024-01-01T00:00:00.000Z',
  };
  // The presence activities open the campaign collections when created; these tests never reach them.
  const history = { getDevice: () => Promise.resolve(record), db: { collection: () => ({}) } } as unknown as History;
  const goneAfterFirst = (item: SubscribeRequestItem): string | undefined => (item.topic === 'devices/d1/cmd' ? undefined : 'channel_not_found');

  it('applySubscriptions reports a device that left mid-call as offline, not as an error', async () => {
    const { emqx } = await serve(bulkSubscribeHandler(goneAfterFirst));
    const acts = createDeviceAdminActivities({ emqx, history });
    const result = await new MockActivityEnvironment().run(acts.applySubscriptions, { clientId: 'd1', desired: record.subscriptions, previous: [] });
    expect(result).toEqual({ online: false, applied: 1 });
  });

  it('reapplyDesiredSubscriptions reports a device that left mid-call as offline, not as an error', async () => {
    const { emqx } = await serve(bulkSubscribeHandler(goneAfterFirst));
    const acts = createPresenceActivities({ emqx, history });
    const result = await new MockActivityEnvironment().run(acts.reapplyDesiredSubscriptions, { clientId: 'd1', connectedAt: 1 });
    expect(result).toEqual({ online: false, applied: 1 });
  });

  it('fails without retrying when EMQX rejects a topic, naming the topic and the reason', async () => {
    const { emqx } = await serve(bulkSubscribeHandler((item) => (item.topic === 'devices/d1/cfg' ? 'invalid_subopts_nl' : undefined)));
    const acts = createDeviceAdminActivities({ emqx, history });
    const err = await new MockActivityEnvironment()
      .run(acts.applySubscriptions, { clientId: 'd1', desired: record.subscriptions, previous: [] })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'SubscriptionRejected', nonRetryable: true });
    expect(String((err as Error).message)).toContain('devices/d1/cfg: invalid_subopts_nl');
  });
});

describe('client rows with null fields (emqx_mgmt_api_clients.erl result_format_undefined_to_null/1)', () => {
  const pages = [
    [connectedClient('on-1'), offlineSessionFromMetadata('off-1')],
    [offlineSessionFromChannel('off-2'), bareSessionRow('bare-1')],
  ];
  const listing: ShapeHandler = ({ path, query }) => {
    if (path === '/clients') {
      const page = Number(query.get('page') ?? '1');
      return { status: 200, body: { data: pages[page - 1] ?? [], meta: { page, limit: 2, count: 4, hasnext: page < pages.length } } };
    }
    if (path === '/clients/off-1') return { status: 200, body: offlineSessionFromMetadata('off-1') };
    return { status: 404, body: CLIENTID_NOT_FOUND };
  };

  it('lists every page although some rows have null node, ip_address, port or only a clientid', async () => {
    const { emqx } = await serve(listing);
    const rows = await emqx.listAllClients({}, { pageSize: 2 });
    expect(rows.map((r) => [r.clientid, r.connected])).toEqual([
      ['on-1', true],
      ['off-1', false],
      ['off-2', false],
      ['bare-1', undefined],
    ]);
    expect(rows[1]).toMatchObject({ ip_address: null, port: null });
    expect(rows[2]).toMatchObject({ node: null, disconnected_at: null, recv_oct: 49, send_pkt: 4 });
  });

  it('reads one offline session with null fields', async () => {
    const { emqx } = await serve(listing);
    await expect(emqx.getClient('off-1')).resolves.toMatchObject({ clientid: 'off-1', connected: false, ip_address: null, port: null });
  });
});
