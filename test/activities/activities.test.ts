import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { describe, expect, it } from 'vitest';
import { createDeviceAdminActivities } from '../../src/activities/device-admin';
import { createFleetActivities } from '../../src/activities/fleet';
import { EmqxBadRequestError, EmqxNotFoundError, EmqxUnavailableError, type EmqxClient } from '../../src/emqx';
import type { History } from '../../src/history';

/** Unit tests of single activities with a fake EMQX client; the integration tests use the real broker. */
function activitiesWith(emqx: Partial<EmqxClient>) {
  const deps = { emqx: emqx as EmqxClient, history: {} as History };
  return { ...createDeviceAdminActivities(deps), ...createFleetActivities(deps) };
}

describe('activities', () => {
  it('maps a rule EMQX rejects to a per-device failure, and an outage to a retryable failure', async () => {
    const acts = activitiesWith({
      putAclRules: (target) => {
        const clientid = (target as { clientid: string }).clientid;
        if (clientid === 'bad') return Promise.reject(new EmqxBadRequestError('rule rejected', { status: 400, code: 'BAD_REQUEST' }));
        if (clientid === 'down') return Promise.reject(new EmqxUnavailableError('503', { status: 503, code: 'SERVICE_UNAVAILABLE' }));
        return Promise.resolve();
      },
    });
    const env = new MockActivityEnvironment();
    const failures = await env.run(acts.writeAclBatch, { entries: [{ clientId: 'ok', rules: [] }, { clientId: 'bad', rules: [] }] });
    expect(failures).toEqual([{ clientId: 'bad', error: 'rule rejected' }]);

    const outage = await env.run(acts.writeAclBatch, { entries: [{ clientId: 'down', rules: [] }] }).catch((e: unknown) => e);
    expect(outage).toBeInstanceOf(ApplicationFailure);
    expect((outage as ApplicationFailure).nonRetryable).toBe(false);
    expect((outage as ApplicationFailure).type).toBe('EmqxUnavailableError');
  });

  it('turns a missing EMQX user during rotation into a non-retryable DeviceNotProvisioned', async () => {
    const acts = activitiesWith({
      updateUser: () => Promise.reject(new EmqxNotFoundError('User not found', { status: 404, code: 'NOT_FOUND' })),
    });
    const err = await new MockActivityEnvironment().run(acts.replacePassword, { username: 'u', password: 'p-123456789' }).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'DeviceNotProvisioned', nonRetryable: true });
    expect(String((err as Error).message)).not.toContain('p-123456789');
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

  it('generates distinct 24-character passwords', async () => {
    const acts = activitiesWith({});
    const env = new MockActivityEnvironment();
    const a = await env.run(acts.generatePassword);
    const b = await env.run(acts.generatePassword);
    expect(a).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect(a).not.toBe(b);
  });
});
