import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import { createDeviceAdminActivities } from '../../src/activities/device-admin';
import { createFleetActivities } from '../../src/activities/fleet';
import { EmqxBadRequestError, EmqxUnavailableError, type EmqxClient } from '../../src/emqx';
import type { History } from '../../src/store';

/** Unit tests of single activities with a fake EMQX client; the integration tests use the real broker. */
function activitiesWith(emqx: Partial<EmqxClient>) {
  const deps = { emqx: emqx as EmqxClient, history: {} as History };
  return { ...createDeviceAdminActivities(deps), ...createFleetActivities(deps) };
}

describe('activities', () => {
  it('retries each device on its own: an outage that passes costs no device, a rule EMQX rejects fails that device only', async () => {
    let downCalls = 0;
    const acts = activitiesWith({
      putAclRules: (target) => {
        const clientid = (target as { clientid: string }).clientid;
        if (clientid === 'bad') return Promise.reject(new EmqxBadRequestError('rule rejected', { status: 400, code: 'BAD_REQUEST' }));
        if (clientid === 'flaky' && ++downCalls < 3) return Promise.reject(new EmqxUnavailableError('503', { status: 503, code: 'SERVICE_UNAVAILABLE' }));
        return Promise.resolve();
      },
    });
    const env = new MockActivityEnvironment();
    const failures = await env.run(acts.writeAclBatch, { entries: [{ clientId: 'ok', rules: [] }, { clientId: 'bad', rules: [] }, { clientId: 'flaky', rules: [] }] });
    expect(failures).toEqual([{ clientId: 'bad', error: 'rule rejected' }]);
    expect(downCalls).toBe(3);
  });

  it('turns a missing EMQX user during rotation into a non-retryable DeviceNotProvisioned, importing nothing', async () => {
    let imported = 0;
    const acts = activitiesWith({
      getUser: () => Promise.resolve(null),
      importUsers: () => {
        imported++;
        return Promise.resolve({ total: 1, success: 1, override: 0, skipped: 0, failed: 0, countsReported: true });
      },
    });
    const hash = { passwordHash: 'a'.repeat(64), salt: 'b'.repeat(32) };
    const err = await new MockActivityEnvironment().run(acts.replaceCredentialHash, { clientId: 'u', hash }).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'DeviceNotProvisioned', nonRetryable: true });
    expect(imported).toBe(0);
  });

  it('leaves subscriptions of an offline device for its next connect', async () => {
    let subscribed = 0;
    const acts = activitiesWith({
      getClient: () => Promise.resolve(null),
      subscribeBulk: () => {
        subscribed++;
        return Promise.resolve({ succeeded: [], failed: [], clientGone: false });
      },
    });
    const result = await new MockActivityEnvironment().run(acts.applySubscriptions, { clientId: 'd', desired: [{ topic: 't', qos: 1 as const }], previous: [] });
    expect(result).toEqual({ online: false, applied: 0 });
    expect(subscribed).toBe(0);
  });
});
