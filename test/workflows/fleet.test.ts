import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseFleetFile } from '../../src/starter/client/fleet-file';
import { FLEET_CHUNK_SIZE } from '../../src/contracts/fleet';
import { EmqxBadRequestError } from '../../src/emqx';
import { connectDevice, setBrokerFaults, startDeviceOpsEnv, type DeviceOpsTestEnv } from '../support/device-ops-env';

let env: DeviceOpsTestEnv;

beforeAll(async () => {
  env = await startDeviceOpsEnv();
});

afterAll(async () => {
  await env?.close();
});

describe('provisionFleet', () => {
  it('imports a file of devices in chunks with per-device results and a small history', async () => {
    const count = FLEET_CHUNK_SIZE * 2 + 37;
    const lines = ['clientId,password,acl,subscriptions,tags'];
    for (let i = 0; i < count; i++) lines.push(`fleet-${i},password-${i}-xyz,allow publish fleet/\${clientid}/up;allow subscribe fleet/\${clientid}/cmd,fleet/fleet-${i}/cmd:1,batch-a`);
    const devices = parseFleetFile(lines.join('\n'), 'csv');

    const { fleetId, handle } = await env.ops.startFleetProvisioning(devices);
    const result = await handle.result();
    expect(result).toMatchObject({ fleetId, total: count, provisioned: count, failed: 0, status: 'completed' });

    const users = await env.emqx.listAllUsers({ like_user_id: 'fleet-' });
    expect(users).toHaveLength(count);
    expect(await env.emqx.getAclRules({ clientid: `fleet-${count - 1}` })).toEqual([
      expect.objectContaining({ permission: 'allow', action: 'publish', topic: `fleet/fleet-${count - 1}/up` }),
      expect.objectContaining({ permission: 'allow', action: 'subscribe', topic: `fleet/fleet-${count - 1}/cmd` }),
      expect.objectContaining({ permission: 'deny', action: 'all', topic: '#' }),
    ]);
    expect(await env.history.fleetResultsOf(fleetId, 'provisioned')).toHaveLength(count);
    expect(await env.history.getDevice('fleet-5')).toMatchObject({ status: 'active', tags: ['batch-a'], subscriptions: [{ topic: 'fleet/fleet-5/cmd', qos: 1 }] });

    const device = await connectDevice(env.broker, 'fleet-7', 'fleet-7', 'password-7-xyz');
    await device.endAsync();

    // One parent and one child per chunk, each with a short history: no per-device workflows.
    const description = await handle.describe();
    expect(description.historyLength).toBeLessThan(100);
    const chunkHistory = await env.temporal.workflow.getHandle(`${handle.workflowId}/chunk-0`).fetchHistory();
    expect(chunkHistory.events?.length ?? 0).toBeLessThan(60);
  });
});

describe('provisionFleet against a failing EMQX', () => {
  const setFaults = (patch: Record<string, number | boolean>): Promise<void> => setBrokerFaults(env.broker, patch);

  function fleetFile(prefix: string, count: number): string {
    const lines = ['clientId,password,acl,subscriptions'];
    for (let i = 0; i < count; i++) lines.push(`${prefix}-${i},password-${i}-xyz,allow subscribe ${prefix}/\${clientid}/cmd,${prefix}/${prefix}-${i}/cmd:1`);
    return lines.join('\n');
  }

  /** EMQX and the records agree: a device has an active record exactly when EMQX has both its credentials and its rules. */
  async function expectEmqxAndRecordsAgree(prefix: string, count: number): Promise<void> {
    const users = new Set((await env.emqx.listAllUsers({ like_user_id: `${prefix}-` })).map((u) => u.user_id));
    const rules = new Set((await env.emqx.listAllAclRules('clients', { like_clientid: `${prefix}-` })).map((r) => r.clientid));
    const records = new Set(
      (await env.history.db.collection('devices').find({ _id: { $regex: `^${prefix}-` } as never, status: 'active' }).toArray()).map((d) => String(d._id)),
    );
    for (let i = 0; i < count; i++) {
      const id = `${prefix}-${i}`;
      expect({ id, complete: users.has(id) && rules.has(id) }).toEqual({ id, complete: records.has(id) });
      expect({ id, credentialsWithoutRules: users.has(id) && !rules.has(id) }).toEqual({ id, credentialsWithoutRules: false });
    }
  }

  it.each([
    [0.02, 300],
    [0.3, 300],
  ])('with %s of REST calls failing, retries per device: %s devices provisioned, EMQX and the records agree', async (rate, count) => {
    const prefix = `flaky${Math.round(rate * 100)}`;
    const devices = parseFleetFile(fleetFile(prefix, count), 'csv');
    await setFaults({ restFailureRate: rate });
    let result;
    try {
      const { handle } = await env.ops.startFleetProvisioning(devices);
      result = await handle.result();
    } finally {
      await setFaults({ restFailureRate: 0 });
    }
    expect(result).toMatchObject({ total: count, provisioned: count, failed: 0 });
    await expectEmqxAndRecordsAgree(prefix, count);
    const device = await connectDevice(env.broker, `${prefix}-3`, `${prefix}-3`, 'password-3-xyz');
    await device.endAsync();
  }, 240_000);

  it('a device whose credentials fail for good is named in its own error and settled: no rules, no record; the others are provisioned', async () => {
    const prefix = 'settle';
    const count = 40;
    const bad = new Set([`${prefix}-7`, `${prefix}-23`]);
    // EMQX refuses any import that holds a bad device, so each bad device fails alone.
    const refusing = new Proxy(env.emqx, {
      get(target, prop, receiver) {
        if (prop === 'importUsers') {
          return (type: 'hash', entries: { user_id: string }[]) =>
            entries.some((e) => bad.has(e.user_id))
              ? Promise.reject(new EmqxBadRequestError(`EMQX POST /authentication/.../import_users failed with 400 BAD_REQUEST: ${entries.length === 1 ? entries[0]?.user_id : 'batch'}`, { status: 400, code: 'BAD_REQUEST' }))
              : target.importUsers(type, entries as never);
        }
        const value: unknown = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const extra = await env.extraWorker(refusing);
    try {
      const { fleetId, handle } = await extra.ops.startFleetProvisioning(parseFleetFile(fleetFile(prefix, count), 'csv'));
      const result = await handle.result();
      expect(result).toMatchObject({ total: count, provisioned: count - 2, failed: 2 });
      expect(result.failures.map((f) => f.clientId).sort()).toEqual([...bad].sort());
      for (const failure of result.failures) {
        expect(failure.error).toMatch(new RegExp(`credentials not stored: .*${failure.clientId}; its rules were removed`));
      }
      const failedResults = await env.history.fleetResultsOf(fleetId, 'failed');
      expect(failedResults.map((r) => r.clientId).sort()).toEqual([...bad].sort());
      for (const id of bad) {
        expect(await env.emqx.getAclRules({ clientid: id })).toBeNull();
        expect(await env.history.getDevice(id)).toBeNull();
      }
      await expectEmqxAndRecordsAgree(prefix, count);
    } finally {
      await extra.stop();
    }
  });
});
