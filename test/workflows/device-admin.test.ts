import { WorkflowFailedError } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmqxBadRequestError } from '../../src/emqx';
import { connectDevice, nextMessage, startDeviceOpsEnv, type DeviceOpsTestEnv } from '../support/device-ops-env';
import { waitFor } from '../harness';

let env: DeviceOpsTestEnv;

beforeAll(async () => {
  env = await startDeviceOpsEnv();
});

afterAll(async () => {
  await env?.close();
});

describe('provisionDevice', () => {
  it('creates credentials, a least-privilege ACL and the device record, and is idempotent', async () => {
    const input = {
      clientId: 'wf-dev-1',
      password: 'first-password-1',
      acl: [{ permission: 'allow' as const, action: 'publish' as const, topic: 'devices/${clientid}/up' }],
      subscriptions: [{ topic: 'devices/wf-dev-1/cmd', qos: 1 as const }],
    };
    const first = await env.ops.provision(input);
    expect(first).toMatchObject({ clientId: 'wf-dev-1', username: 'wf-dev-1', status: 'completed', online: false });
    expect(first.generatedPassword).toBeUndefined();

    const rules = await env.emqx.getAclRules({ clientid: 'wf-dev-1' });
    expect(rules?.map((r) => `${r.permission} ${r.action} ${r.topic}`)).toEqual(['allow publish devices/${clientid}/up', 'deny all #']);
    const record = await env.history.getDevice('wf-dev-1');
    expect(record).toMatchObject({ status: 'active', username: 'wf-dev-1', subscriptions: [{ topic: 'devices/wf-dev-1/cmd', qos: 1 }] });

    const again = await env.ops.provision(input);
    expect(again.status).toBe('completed');
    expect(await env.emqx.getAclRules({ clientid: 'wf-dev-1' })).toEqual(rules);
    const recordAgain = await env.history.getDevice('wf-dev-1');
    expect(recordAgain?.provisionedAt).toBe(record?.provisionedAt);

    await env.ops.provision({ ...input, acl: [{ permission: 'allow', action: 'all', topic: 'devices/wf-dev-1/#' }] });
    const updated = await env.emqx.getAclRules({ clientid: 'wf-dev-1' });
    expect(updated?.map((r) => r.topic)).toEqual(['devices/wf-dev-1/#', '#']);
  });

  it('lets the device in with its password, enforces the ACL, and applies proxy subscriptions when online', async () => {
    const { generatedPassword } = await env.ops.provision({
      clientId: 'wf-dev-2',
      generatePassword: true,
      acl: [
        { permission: 'allow', action: 'publish', topic: 'devices/${clientid}/up' },
        { permission: 'allow', action: 'subscribe', topic: 'devices/${clientid}/cmd' },
      ],
      subscriptions: [],
    });
    expect(generatedPassword).toMatch(/^[A-Za-z0-9_-]{24}$/);
    await expect(connectDevice(env.broker, 'wf-dev-2', 'wf-dev-2', 'wrong-password')).rejects.toThrow();

    const device = await connectDevice(env.broker, 'wf-dev-2', 'wf-dev-2', generatedPassword!);
    try {
      // Proxy subscription: the device never subscribes itself.
      const applied = await env.ops.setSubscriptions('wf-dev-2', [{ topic: 'devices/wf-dev-2/cmd', qos: 1 }]);
      expect(applied).toMatchObject({ online: true, applied: 1 });
      const received = nextMessage(device, 'devices/wf-dev-2/cmd');
      const outcomes = await env.emqx.publishBulk([{ topic: 'devices/wf-dev-2/cmd', payload: 'reboot', qos: 1 }]);
      expect(outcomes[0]?.status).toBe('delivered');
      expect(await received).toBe('reboot');

      // A subscription outside the ACL is refused (SUBACK 128).
      await expect(device.subscribeAsync('other/topic')).rejects.toThrow(/Subscribe error/);
    } finally {
      await device.endAsync();
    }
  });

  it('rolls back the credentials it created when ACL writes fail for good (saga)', async () => {
    const failingAcl = new Proxy(env.emqx, {
      get(target, prop, receiver) {
        if (prop === 'putAclRules') {
          return () => Promise.reject(new EmqxBadRequestError('PUT /authorization/.../rules/clients/x: rule rejected', { status: 400, code: 'BAD_REQUEST' }));
        }
        const value: unknown = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const extra = await env.extraWorker(failingAcl);
    try {
      const attempt = extra.ops.provision({ clientId: 'wf-saga', password: 'saga-password-1', acl: [], subscriptions: [] });
      const error = await attempt.then(() => null, (err: unknown) => err);
      expect(error).toBeInstanceOf(WorkflowFailedError);
      expect(String((error as WorkflowFailedError).cause?.message)).toMatch(/rolled back.*rule rejected/);
      expect(await env.emqx.getUser('wf-saga')).toBeNull();
      expect(await env.history.getDevice('wf-saga')).toBeNull();
      const audit = await env.history.auditOf('wf-saga');
      expect(audit.map((a) => a.outcome)).toContain('compensated');
    } finally {
      await extra.stop();
    }
  });
});

describe('rotateCredentials and deprovisionDevice', () => {
  it('rotates the password with a kick: the old one is rejected, the new one accepted', async () => {
    await env.ops.provision({ clientId: 'wf-rot', password: 'old-password-1', acl: [], subscriptions: [] });
    const device = await connectDevice(env.broker, 'wf-rot', 'wf-rot', 'old-password-1');
    const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
    const handle = await env.ops.startRotation({ clientId: 'wf-rot', password: 'new-password-1', kick: true });
    expect(await handle.result()).toMatchObject({ kicked: true, status: 'completed' });
    await closed;
    await expect(connectDevice(env.broker, 'wf-rot', 'wf-rot', 'old-password-1')).rejects.toThrow();
    const again = await connectDevice(env.broker, 'wf-rot', 'wf-rot', 'new-password-1');
    await again.endAsync();
    expect((await env.history.getDevice('wf-rot'))?.credentialsRotatedAt).toBeTruthy();
  });

  it('refuses to rotate a device that was never provisioned', async () => {
    const handle = await env.ops.startRotation({ clientId: 'wf-ghost', generatePassword: true });
    const failure = await handle.result().catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect((failure as WorkflowFailedError).cause).toMatchObject({ type: 'DeviceNotProvisioned' });
  });

  it('deprovisions: kicks the device, removes credentials and ACL, and it cannot reconnect', async () => {
    await env.ops.provision({ clientId: 'wf-deprov', password: 'deprov-password-1', acl: [], subscriptions: [{ topic: 'x/y', qos: 0 }] });
    const device = await connectDevice(env.broker, 'wf-deprov', 'wf-deprov', 'deprov-password-1');
    const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
    const result = await (await env.ops.startDeprovisioning('wf-deprov')).result();
    expect(result).toMatchObject({ kicked: true, hadCredentials: true });
    await closed;
    await expect(connectDevice(env.broker, 'wf-deprov', 'wf-deprov', 'deprov-password-1')).rejects.toThrow();
    expect(await env.emqx.getUser('wf-deprov')).toBeNull();
    expect(await env.emqx.getAclRules({ clientid: 'wf-deprov' })).toBeNull();
    expect(await env.history.getDevice('wf-deprov')).toMatchObject({ status: 'deprovisioned', subscriptions: [] });
    await waitFor(async () => (await env.emqx.getClient('wf-deprov')) === null, { what: 'client gone from EMQX' });
  });
});

describe('secrets', () => {
  it('keeps passwords out of raw Temporal history and MongoDB', async () => {
    const password = 'never-in-history-Zq9';
    await env.ops.provision({ clientId: 'wf-secret', password, acl: [], subscriptions: [] });
    const rotated = await (await env.ops.startRotation({ clientId: 'wf-secret', generatePassword: true })).result();
    const secrets = [password, rotated.generatedPassword!];

    for (const workflowId of ['provision/wf-secret', 'rotate/wf-secret']) {
      const raw = await env.temporal.connection.workflowService.getWorkflowExecutionHistory({
        namespace: 'default',
        execution: { workflowId },
      });
      const events = raw.history?.events ?? [];
      expect(events.length).toBeGreaterThan(5);
      // Every payload is raw bytes here: search them as text and as the JSON rendering (base64).
      const bytes = events.map((e) => Buffer.from(temporal.api.history.v1.HistoryEvent.encode(e).finish()).toString('latin1')).join('');
      const encoded = JSON.stringify(events);
      for (const secret of secrets) {
        expect(bytes).not.toContain(secret);
        expect(encoded).not.toContain(secret);
        expect(encoded).not.toContain(Buffer.from(secret).toString('base64'));
      }
    }
    // The collections this file's workflows write (fleet results and connection events come from
    // other paths, tested in their own files).
    for (const name of ['devices', 'audit']) {
      const found = await env.history.db.collection(name).find({}).toArray();
      expect(found.length, name).toBeGreaterThan(0);
      const docs = JSON.stringify(found);
      for (const secret of secrets) expect(docs).not.toContain(secret);
    }
  });
});
