import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseFleetFile } from '../../src/starter/fleet-file';
import { FLEET_CHUNK_SIZE } from '../../src/workflows/fleet';
import { connectDevice, startDeviceOpsEnv, type DeviceOpsTestEnv } from '../support/device-ops-env';

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
