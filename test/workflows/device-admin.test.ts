import { WorkflowFailedError } from '@temporalio/client';
import type { Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptionCodec, parseEncryptionKeys } from '../../src/codec/encryption-codec';
import { EmqxBadRequestError, type EmqxClient } from '../../src/emqx';
import { InputError } from '../../src/domain/input-error';
import { hashPassword } from '../../src/starter/client/credentials';
import type { ProvisionRequest } from '../../src/contracts/device-admin';
import { provisionDevice } from '../../src/workflows/device-admin';
import mqtt, { type MqttClient } from 'mqtt';
import { connectDevice, setBrokerFaults, nextMessage, startDeviceOpsEnv, type DeviceOpsTestEnv } from '../support/device-ops-env';
import { waitFor } from '../harness';

let env: DeviceOpsTestEnv;

/** The EMQX client with one method failing for good (a fault of one REST call, not of the whole broker). */
function withFailing(emqx: EmqxClient, method: keyof EmqxClient, error: () => Error): EmqxClient {
  return new Proxy(emqx, {
    get(target, prop, receiver) {
      if (prop === method) return () => Promise.reject(error());
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

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
      acl: [
        { permission: 'allow' as const, action: 'publish' as const, topic: 'devices/${clientid}/up' },
        { permission: 'allow' as const, action: 'subscribe' as const, topic: 'devices/${clientid}/cmd' },
      ],
      subscriptions: [{ topic: 'devices/wf-dev-1/cmd', qos: 1 as const }],
    };
    const first = await env.ops.provision(input);
    expect(first).toMatchObject({ clientId: 'wf-dev-1', username: 'wf-dev-1', status: 'completed', online: false });
    expect(first).not.toHaveProperty('generatedPassword');

    // EMQX holds the rules rendered for this device (placeholders filled at write time); the record keeps the template.
    const rules = await env.emqx.getAclRules({ clientid: 'wf-dev-1' });
    expect(rules?.map((r) => `${r.permission} ${r.action} ${r.topic}`)).toEqual(['allow publish devices/wf-dev-1/up', 'allow subscribe devices/wf-dev-1/cmd', 'deny all #']);
    const record = await env.history.getDevice('wf-dev-1');
    expect(record).toMatchObject({ status: 'active', username: 'wf-dev-1', acl: input.acl, subscriptions: [{ topic: 'devices/wf-dev-1/cmd', qos: 1 }] });
    // The password is stored under the client id (user_id_type = clientid).
    expect(await env.emqx.getUser('wf-dev-1')).toMatchObject({ user_id: 'wf-dev-1' });

    const again = await env.ops.provision(input);
    expect(again.status).toBe('completed');
    expect(await env.emqx.getAclRules({ clientid: 'wf-dev-1' })).toEqual(rules);
    const recordAgain = await env.history.getDevice('wf-dev-1');
    expect(recordAgain?.provisionedAt).toBe(record?.provisionedAt);

    await env.ops.provision({ ...input, acl: [{ permission: 'allow', action: 'all', topic: 'devices/${username}/#' }] });
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

  // EMQX subscribes an offline persistent session through the REST API: its channel outlives the
  // connection (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt.erl do_subscribe/2).
  it('sets desired subscriptions on a device whose persistent session is offline: the session is subscribed and the device gets what was published meanwhile', async () => {
    const clientId = 'wf-persist';
    const password = 'persist-password-1';
    const topic = `devices/${clientId}/cmd`;
    await env.ops.provision({ clientId, password, acl: [{ permission: 'allow', action: 'subscribe', topic: 'devices/${clientid}/cmd' }], subscriptions: [] });
    const options = { clientId, username: clientId, password, clean: false, reconnectPeriod: 0, connectTimeout: 5_000 };
    await (await mqtt.connectAsync(env.broker.mqttUrl, options)).endAsync();
    await waitFor(async () => (await env.emqx.getClient(clientId))?.connected === false, { what: 'the offline session' });

    const applied = await env.ops.setSubscriptions(clientId, [{ topic, qos: 1 }]);
    expect(applied).toMatchObject({ online: false, applied: 1 });
    const outcomes = await env.emqx.publishBulk([{ topic, payload: 'while-away', qos: 1 }]);
    expect(outcomes[0]?.status).toBe('delivered');

    // Listening before the CONNACK: the queue follows it at once.
    const back = mqtt.connect(env.broker.mqttUrl, options);
    const received = nextMessage(back, topic);
    try {
      expect(await received).toBe('while-away');
    } finally {
      await back.endAsync();
    }
  });

  it('stores credentials last: when that fails for good, the ACL and the record it wrote are undone (saga)', async () => {
    const failingImport = withFailing(env.emqx, 'importUsers', () => new EmqxBadRequestError('POST /authentication/.../import_users: bad entry', { status: 400, code: 'BAD_REQUEST' }));
    const extra = await env.extraWorker(failingImport);
    try {
      const attempt = extra.ops.provision({ clientId: 'wf-saga', password: 'saga-password-1', acl: [], subscriptions: [] });
      const error = await attempt.then(() => null, (err: unknown) => err);
      expect(error).toBeInstanceOf(WorkflowFailedError);
      expect(String((error as WorkflowFailedError).cause?.message)).toMatch(/rolled back.*bad entry/);
      expect(await env.emqx.getUser('wf-saga')).toBeNull();
      expect(await env.emqx.getAclRules({ clientid: 'wf-saga' })).toBeNull();
      expect(await env.history.getDevice('wf-saga')).toBeNull();
      const audit = await env.history.auditOf('wf-saga');
      expect(audit.map((a) => a.outcome)).toContain('compensated');
    } finally {
      await extra.stop();
    }
  });

  it('keys the password by client id and renders ${username} into the rules EMQX holds', async () => {
    await env.ops.provision({
      clientId: 'wf-id-1',
      username: 'shared-name',
      password: 'identity-password-1',
      acl: [{ permission: 'allow', action: 'all', topic: 'users/${username}/${clientid}/#' }],
      subscriptions: [],
    });
    expect(await env.emqx.getUser('wf-id-1')).toMatchObject({ user_id: 'wf-id-1' });
    expect(await env.emqx.getUser('shared-name')).toBeNull();
    expect((await env.emqx.getAclRules({ clientid: 'wf-id-1' }))?.map((r) => r.topic)).toEqual(['users/shared-name/wf-id-1/#', '#']);
    expect((await env.history.getDevice('wf-id-1'))?.acl[0]?.topic).toBe('users/${username}/${clientid}/#');
  });

  it('refuses a desired subscription outside the ACL before anything is written, naming topic and rule', async () => {
    const input = {
      clientId: 'wf-outside',
      password: 'outside-password-1',
      acl: [
        { permission: 'deny' as const, action: 'subscribe' as const, topic: 'devices/+/admin' },
        { permission: 'allow' as const, action: 'subscribe' as const, topic: 'devices/${clientid}/#' },
      ],
      subscriptions: [{ topic: 'devices/wf-outside/admin', qos: 0 as const }, { topic: 'devices/other/cmd', qos: 0 as const }],
    };
    const refused = await env.ops.provision(input).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(InputError);
    expect((refused as InputError).problems).toEqual([
      expect.stringMatching(/^subscription "devices\/wf-outside\/admin" is denied by ACL rule 1 "deny subscribe devices\/\+\/admin"/),
      expect.stringMatching(/^subscription "devices\/other\/cmd": no ACL rule of the device allows it/),
    ]);
    await expect(env.temporal.workflow.getHandle('provision/wf-outside').describe()).rejects.toThrow();

    // A caller that starts the workflow itself gets the same refusal, still before any write.
    const request: ProvisionRequest = { ...input, credentials: hashPassword(input.password), passwordGenerated: false, tags: [] };
    const failure = await env.temporal.workflow
      .execute(provisionDevice, { workflowId: 'provision/wf-outside', taskQueue: env.taskQueue, args: [request] })
      .catch((err: unknown) => err);
    expect((failure as WorkflowFailedError).cause).toMatchObject({ type: 'InvalidDeviceInput', message: expect.stringMatching(/devices\/wf-outside\/admin/) });
    expect(await env.emqx.getUser('wf-outside')).toBeNull();
    expect(await env.emqx.getAclRules({ clientid: 'wf-outside' })).toBeNull();
    expect(await env.history.getDevice('wf-outside')).toBeNull();

    // Narrowing the ACL under a recorded subscription is refused the same way.
    await env.ops.provision({ clientId: 'wf-narrow', password: 'narrow-password-1', acl: input.acl.slice(1), subscriptions: [{ topic: 'devices/wf-narrow/cmd', qos: 0 }] });
    await expect(env.ops.setAcl('wf-narrow', [])).rejects.toThrow(/subscription "devices\/wf-narrow\/cmd": no ACL rule of the device allows it/);
    await expect(env.ops.setSubscriptions('wf-narrow', [{ topic: '$SYS/#', qos: 0 }])).rejects.toThrow(/subscription "\$SYS\/#": no ACL rule allows it/);
  });

  it('refuses identifiers that would collapse or widen topics at the library and at the workflow', async () => {
    for (const clientId of ['dev\ud800', 'dev\ud801']) {
      await expect(env.ops.provision({ clientId, generatePassword: true })).rejects.toThrow(/clientId: contains a lone surrogate/);
    }
    await expect(env.ops.provision({ clientId: 'wf-ok', username: 'a/#', generatePassword: true })).rejects.toThrow(/username: must not contain "\/"/);
    const request: ProvisionRequest = { clientId: 'wf-bad\u202e', credentials: hashPassword('x-password-1'), passwordGenerated: false, acl: [], subscriptions: [], tags: [] };
    const failure = await env.temporal.workflow
      .execute(provisionDevice, { workflowId: 'provision/wf-bad-direct', taskQueue: env.taskQueue, args: [request] })
      .catch((err: unknown) => err);
    expect((failure as WorkflowFailedError).cause).toMatchObject({ type: 'InvalidDeviceInput', message: expect.stringMatching(/clientId: contains a bidirectional text control \(U\+202E\)/) });
  });
});

describe('rotateCredentials and deprovisionDevice', () => {
  it('rotates the password with a kick: the old one is rejected, the new one accepted', async () => {
    await env.ops.provision({ clientId: 'wf-rot', password: 'old-password-1', acl: [], subscriptions: [] });
    const device = await connectDevice(env.broker, 'wf-rot', 'wf-rot', 'old-password-1');
    const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
    const { handle } = await env.ops.startRotation({ clientId: 'wf-rot', password: 'new-password-1', kick: true });
    expect(await handle.result()).toMatchObject({ kicked: true, status: 'completed' });
    await closed;
    await expect(connectDevice(env.broker, 'wf-rot', 'wf-rot', 'old-password-1')).rejects.toThrow();
    const again = await connectDevice(env.broker, 'wf-rot', 'wf-rot', 'new-password-1');
    await again.endAsync();
    expect((await env.history.getDevice('wf-rot'))?.credentialsRotatedAt).toBeTruthy();
  });

  it('rotation whose kick fails: the new password is in place, the live session keeps its rules, the failure says so', async () => {
    await env.ops.provision({ clientId: 'wf-rot-kick', password: 'old-password-2', acl: [{ permission: 'allow', action: 'subscribe', topic: 'devices/${clientid}/cmd' }], subscriptions: [] });
    const device = await connectDevice(env.broker, 'wf-rot-kick', 'wf-rot-kick', 'old-password-2');
    const extra = await env.extraWorker(withFailing(env.emqx, 'kickClient', () => new EmqxBadRequestError('DELETE /clients/wf-rot-kick: refused', { status: 400, code: 'BAD_REQUEST' })));
    try {
      const { handle } = await extra.ops.startRotation({ clientId: 'wf-rot-kick', password: 'new-password-2', kick: true });
      const failure = await handle.result().catch((err: unknown) => err);
      expect((failure as WorkflowFailedError).cause).toMatchObject({
        type: 'RotationKickFailed',
        message: expect.stringMatching(/new password is in place but the kick failed: .*refused; its current session keeps its ACL/),
      });
      await expect(connectDevice(env.broker, 'wf-rot-kick', 'wf-rot-kick', 'old-password-2')).rejects.toThrow();
      expect(device.connected).toBe(true);
      await expect(device.subscribeAsync('#')).rejects.toThrow(/Subscribe error/);
      expect((await env.history.getDevice('wf-rot-kick'))?.credentialsRotatedAt).toBeTruthy();
    } finally {
      await extra.stop();
      await device.endAsync();
    }
  });

  it('refuses to rotate a device that was never provisioned', async () => {
    const { handle } = await env.ops.startRotation({ clientId: 'wf-ghost', generatePassword: true });
    const failure = await handle.result().catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect((failure as WorkflowFailedError).cause).toMatchObject({ type: 'DeviceNotProvisioned' });
  });

  it('deprovisions: kicks the device, removes credentials and ACL, and it cannot reconnect', async () => {
    await env.ops.provision({
      clientId: 'wf-deprov',
      password: 'deprov-password-1',
      acl: [{ permission: 'allow', action: 'subscribe', topic: 'x/y' }],
      subscriptions: [{ topic: 'x/y', qos: 0 }],
    });
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

describe('no device is ever connected with credentials and without its ACL', () => {
  const setFaults = (patch: Record<string, number | boolean>): Promise<void> => setBrokerFaults(env.broker, patch);

  /** Whether this live session was granted `#` (SUBACK 128 rejects the promise). */
  async function grantedEverything(device: MqttClient): Promise<boolean> {
    const probe = async (): Promise<boolean> => {
      try {
        const granted = await device.subscribeAsync('#');
        return granted.some((g) => g.qos !== 128);
      } catch {
        return false;
      } finally {
        await device.unsubscribeAsync('#').catch(() => undefined);
      }
    };
    // A kick that lands while a probe is in flight closes the connection; mqtt.js then never answers
    // that SUBSCRIBE (no reconnect), so the probe ends with the connection instead.
    let onClose = (): void => undefined;
    const closed = new Promise<boolean>((resolve) => {
      onClose = () => resolve(false);
      device.once('close', onClose);
    });
    try {
      return await Promise.race([probe(), closed]);
    } finally {
      device.removeListener('close', onClose);
    }
  }

  it('provisioning under REST latency: a device polling with its credentials is never granted "#"', async () => {
    const password = 'window-password-1';
    await setFaults({ restLatencyMs: 250 });
    let granted = 0;
    let connects = 0;
    let done = false;
    const poller = (async () => {
      // Keeps going a few rounds after the workflow ends, so it surely connects at least once.
      for (let after = 0; after < 3; after += done ? 1 : 0) {
        const device = await connectDevice(env.broker, 'wf-window', 'wf-window', password).catch(() => null);
        if (!device) continue;
        connects++;
        if (await grantedEverything(device)) granted++;
        await device.endAsync();
      }
    })();
    try {
      await env.ops.provision({ clientId: 'wf-window', password, acl: [{ permission: 'allow', action: 'subscribe', topic: 'devices/${clientid}/cmd' }], subscriptions: [] });
    } finally {
      done = true;
      await poller;
      await setFaults({ restLatencyMs: 0 });
    }
    expect(connects).toBeGreaterThan(0);
    expect(granted).toBe(0);
  });

  it('deprovisioning under REST latency: the live session keeps its rules until it is kicked, and cannot come back', async () => {
    const password = 'window-password-2';
    await env.ops.provision({ clientId: 'wf-window-2', password, acl: [{ permission: 'allow', action: 'subscribe', topic: 'devices/${clientid}/cmd' }], subscriptions: [] });
    const device = await connectDevice(env.broker, 'wf-window-2', 'wf-window-2', password);
    await setFaults({ restLatencyMs: 250 });
    let granted = 0;
    let probes = 0;
    try {
      const handle = await env.ops.startDeprovisioning('wf-window-2');
      const outcome = handle.result();
      while (device.connected) {
        if (await grantedEverything(device)) granted++;
        probes++;
      }
      expect(await outcome).toMatchObject({ kicked: true, hadCredentials: true });
    } finally {
      await setFaults({ restLatencyMs: 0 });
      device.end(true);
    }
    expect(probes).toBeGreaterThan(0);
    expect(granted).toBe(0);
    await expect(connectDevice(env.broker, 'wf-window-2', 'wf-window-2', password)).rejects.toThrow();
  });

  it('a deprovision that fails after its first step leaves the device unable to connect, and its record says where it stopped', async () => {
    const password = 'stuck-password-1';
    await env.ops.provision({ clientId: 'wf-stuck', password, acl: [{ permission: 'allow', action: 'subscribe', topic: 'devices/${clientid}/cmd' }], subscriptions: [] });
    const device = await connectDevice(env.broker, 'wf-stuck', 'wf-stuck', password);
    const closed = new Promise<void>((resolve) => device.once('close', () => resolve()));
    const failingAclRemoval = withFailing(env.emqx, 'deleteAclRules', () => new EmqxBadRequestError('DELETE .../rules/clients/wf-stuck: refused', { status: 400, code: 'BAD_REQUEST' }));
    const extra = await env.extraWorker(failingAclRemoval);
    try {
      const failure = await (await extra.ops.startDeprovisioning('wf-stuck')).result().catch((err: unknown) => err);
      expect((failure as WorkflowFailedError).cause).toMatchObject({
        type: 'DeprovisioningFailed',
        message: expect.stringMatching(/stopped at step remove-acl: .*refused; its credentials are removed, so it cannot connect again/),
      });
    } finally {
      await extra.stop();
    }
    await closed;
    await expect(connectDevice(env.broker, 'wf-stuck', 'wf-stuck', password)).rejects.toThrow();
    expect(await env.emqx.getUser('wf-stuck')).toBeNull();
    expect(await env.emqx.getAclRules({ clientid: 'wf-stuck' })).not.toBeNull();
    expect(await env.history.getDevice('wf-stuck')).toMatchObject({
      status: 'deprovisioning-failed',
      failure: { operation: 'deprovision', step: 'remove-acl', error: expect.stringMatching(/refused/) },
    });

    // Running it again finishes the job.
    expect(await (await env.ops.startDeprovisioning('wf-stuck')).result()).toMatchObject({ status: 'completed', hadCredentials: false });
    expect(await env.emqx.getAclRules({ clientid: 'wf-stuck' })).toBeNull();
    expect(await env.history.getDevice('wf-stuck')).toMatchObject({ status: 'deprovisioned' });
    expect(await env.history.getDevice('wf-stuck')).not.toHaveProperty('failure');
  });
});

describe('secrets', () => {
  /** Every payload of a workflow's history, decoded with the payload codec, as text. */
  async function decodedHistory(workflowId: string): Promise<string> {
    const codec = new EncryptionCodec(parseEncryptionKeys(env.keys));
    const raw = await env.temporal.workflowService.getWorkflowExecutionHistory({ namespace: 'default', execution: { workflowId } });
    const payloads: Payload[] = [];
    const visit = (value: unknown): void => {
      if (value === null || typeof value !== 'object') return;
      if ('data' in value && 'metadata' in value && value.data instanceof Uint8Array) payloads.push(value as Payload);
      else for (const child of Object.values(value)) visit(child);
    };
    visit(raw.history?.events);
    const decoded = await codec.decode(payloads);
    return decoded.map((p) => Buffer.from(p.data ?? new Uint8Array()).toString('utf8')).join('\n');
  }

  it('keeps plaintext passwords out of decoded Temporal history and MongoDB; the generated one works once shown', async () => {
    const password = 'never-in-history-Zq9';
    const provisioned = await env.ops.provision({ clientId: 'wf-secret', password, acl: [], subscriptions: [] });
    expect(provisioned).not.toHaveProperty('generatedPassword');
    const rotation = await env.ops.startRotation({ clientId: 'wf-secret', generatePassword: true });
    expect(await rotation.handle.result()).not.toHaveProperty('generatedPassword');
    const generated = rotation.generatedPassword!;
    expect(generated).toMatch(/^[A-Za-z0-9_-]{24}$/);
    const secrets = [password, generated];

    for (const workflowId of ['provision/wf-secret', 'rotate/wf-secret']) {
      const text = await decodedHistory(workflowId);
      expect(text, 'the decoded history is readable (the scan sees what the UI shows)').toContain('wf-secret');
      expect(text, 'the workflow got the hash').toMatch(/"passwordHash":"[0-9a-f]{64}"/);
      for (const secret of secrets) {
        expect(text).not.toContain(secret);
        expect(text).not.toContain(Buffer.from(secret).toString('base64'));
      }
    }
    for (const name of ['devices', 'audit']) {
      const found = await env.history.db.collection(name).find({}).toArray();
      expect(found.length, name).toBeGreaterThan(0);
      const docs = JSON.stringify(found);
      for (const secret of secrets) expect(docs).not.toContain(secret);
    }

    // The hash EMQX got is sha256 with the salt as prefix, EMQX's default: the device connects with
    // the generated password (the dev broker must check salt ++ password, as EMQX does).
    await expect(connectDevice(env.broker, 'wf-secret', 'wf-secret', password)).rejects.toThrow();
    const device = await connectDevice(env.broker, 'wf-secret', 'wf-secret', generated);
    await device.endAsync();
  });
});
