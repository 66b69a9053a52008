import {
  ApplicationFailure,
  CancellationScope,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  upsertMemo,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AclRule, AlarmPolicy, DeviceRecord, Subscription } from '../domain/device';
import { effectiveAcl, usernameOf } from '../domain/device-core';
import { presenceWorkflowId } from '../domain/presence';
import { deviceRecordChangedSignal } from './presence';
import { failureMessage } from './failures';

/**
 * Device-administration workflows: provision (a saga), deprovision, rotate credentials, kick, set
 * ACL, set desired subscriptions. Each call to EMQX or MongoDB is one idempotent activity; a step
 * that fails for good throws a non-retryable failure, and the saga undoes what it had done.
 */

const steps = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '500 ms', backoffCoefficient: 2, maximumInterval: '20 seconds', maximumAttempts: 8 },
});

/** Compensations must not give up quickly: they run after a failure and keep retrying longer. */
const undo = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 20 },
});

export interface ProvisionRequest {
  clientId: string;
  username?: string;
  /** Present when the caller chose the password; travels only through the encrypted payload codec. */
  password?: string;
  generatePassword: boolean;
  acl: AclRule[];
  subscriptions: Subscription[];
  alarmPolicy?: AlarmPolicy;
  tags: string[];
}

export interface ProvisionResult {
  clientId: string;
  username: string;
  status: 'completed';
  /** Only when generated: returned once to the caller, through the encrypted codec. */
  generatedPassword?: string;
  online: boolean;
  subscriptionsApplied: number;
}


async function runCompensations(compensations: (() => Promise<unknown>)[]): Promise<void> {
  await CancellationScope.nonCancellable(async () => {
    for (const compensate of compensations) {
      try {
        await compensate();
      } catch (err) {
        log.error('compensation failed', { error: failureMessage(err) });
      }
    }
  });
}

/**
 * Tells the device's presence workflow that its record changed (alarm policy, deprovisioning), so
 * it reloads it. A device without one (never connected) reads the record when its workflow starts.
 * Behind a patch: histories recorded before this step replay without it.
 */
async function tellPresenceWorkflow(clientId: string): Promise<void> {
  if (!patched('tell-presence-workflow')) return;
  try {
    await getExternalWorkflowHandle(presenceWorkflowId(clientId)).signal(deviceRecordChangedSignal);
  } catch {
    // No presence workflow running: nothing to tell.
  }
}

function auditKey(step: string): string {
  const info = workflowInfo();
  return `${info.workflowId}/${info.runId}/${step}`;
}

export async function provisionDevice(request: ProvisionRequest): Promise<ProvisionResult> {
  const { clientId } = request;
  const username = usernameOf(request);
  upsertMemo({ clientId, username, aclRules: request.acl.length, subscriptions: request.subscriptions.length });
  const compensations: (() => Promise<unknown>)[] = [];
  try {
    const password = request.password ?? (await steps.generatePassword());

    const credentials = await steps.ensureCredentials({ username, password });
    if (credentials.created) compensations.unshift(() => undo.removeCredentials({ username }));

    const previousAcl = await steps.readAcl({ clientId });
    await steps.writeAcl({ clientId, rules: effectiveAcl(request.acl) });
    compensations.unshift(() =>
      previousAcl ? undo.writeAcl({ clientId, rules: previousAcl }) : undo.removeAcl({ clientId }),
    );

    const previous = await steps.getDeviceRecord({ clientId });
    const now = new Date(Date.now()).toISOString();
    const record: DeviceRecord = {
      clientId,
      username,
      acl: request.acl,
      subscriptions: request.subscriptions,
      tags: request.tags,
      status: 'active',
      provisionedAt: previous?.status === 'active' ? previous.provisionedAt : now,
      updatedAt: now,
      ...(request.alarmPolicy ? { alarmPolicy: request.alarmPolicy } : {}),
      ...(previous?.credentialsRotatedAt ? { credentialsRotatedAt: previous.credentialsRotatedAt } : {}),
    };
    await steps.saveDeviceRecord({ record });
    compensations.unshift(() =>
      previous ? undo.saveDeviceRecord({ record: previous }) : undo.deleteDeviceRecord({ clientId }),
    );

    const applied = await steps.applySubscriptions({
      clientId,
      desired: request.subscriptions,
      previous: previous?.subscriptions ?? [],
    });
    await tellPresenceWorkflow(clientId);

    await steps.recordAudit({
      key: auditKey('provision'),
      clientId,
      operation: 'provision',
      outcome: 'succeeded',
      details: { username, aclRules: request.acl.length, subscriptions: request.subscriptions.length, generatedPassword: request.generatePassword },
    });
    return {
      clientId,
      username,
      status: 'completed',
      online: applied.online,
      subscriptionsApplied: applied.applied,
      ...(request.password === undefined ? { generatedPassword: password } : {}),
    };
  } catch (err) {
    const reason = failureMessage(err);
    await runCompensations(compensations);
    await CancellationScope.nonCancellable(() =>
      undo.recordAudit({ key: auditKey('provision'), clientId, operation: 'provision', outcome: 'compensated', details: { reason } }),
    );
    throw ApplicationFailure.nonRetryable(`provisioning ${clientId} failed and was rolled back: ${reason}`, 'ProvisioningFailed');
  }
}

export interface DeprovisionResult {
  clientId: string;
  status: 'completed';
  kicked: boolean;
  hadCredentials: boolean;
}

/** Removes credentials first so the kicked device cannot log in again (deleting a user does not disconnect it). */
export async function deprovisionDevice(request: { clientId: string }): Promise<DeprovisionResult> {
  const { clientId } = request;
  const record = await steps.getDeviceRecord({ clientId });
  const username = record?.username ?? clientId;
  upsertMemo({ clientId, username });
  const removed = await steps.removeCredentials({ username });
  await steps.removeAcl({ clientId });
  const kicked = await steps.kickClient({ clientId });
  if (record) {
    await steps.saveDeviceRecord({
      record: { ...record, status: 'deprovisioned', subscriptions: [], acl: [], updatedAt: new Date(Date.now()).toISOString() },
    });
    await tellPresenceWorkflow(clientId);
  }
  await steps.recordAudit({
    key: auditKey('deprovision'),
    clientId,
    operation: 'deprovision',
    outcome: 'succeeded',
    details: { kicked: kicked.kicked, hadCredentials: removed.existed },
  });
  return { clientId, status: 'completed', kicked: kicked.kicked, hadCredentials: removed.existed };
}

export interface RotateRequest {
  clientId: string;
  password?: string;
  generatePassword: boolean;
  kick: boolean;
}

export interface RotateResult {
  clientId: string;
  status: 'completed';
  kicked: boolean;
  generatedPassword?: string;
}

export async function rotateCredentials(request: RotateRequest): Promise<RotateResult> {
  const { clientId } = request;
  const record = await activeRecord(clientId);
  upsertMemo({ clientId, username: record.username, kick: request.kick });
  const password = request.password ?? (await steps.generatePassword());
  await steps.replacePassword({ username: record.username, password });
  const kicked = request.kick ? (await steps.kickClient({ clientId })).kicked : false;
  const now = new Date(Date.now()).toISOString();
  await steps.saveDeviceRecord({ record: { ...record, credentialsRotatedAt: now, updatedAt: now } });
  await steps.recordAudit({
    key: auditKey('rotate'),
    clientId,
    operation: 'rotate-credentials',
    outcome: 'succeeded',
    details: { kicked, generatedPassword: request.generatePassword },
  });
  return { clientId, status: 'completed', kicked, ...(request.password === undefined ? { generatedPassword: password } : {}) };
}

export async function kickDevice(request: { clientId: string }): Promise<{ clientId: string; kicked: boolean }> {
  const { kicked } = await steps.kickClient(request);
  await steps.recordAudit({
    key: auditKey('kick'),
    clientId: request.clientId,
    operation: 'kick',
    outcome: 'succeeded',
    details: { wasOnline: kicked },
  });
  return { clientId: request.clientId, kicked };
}

async function activeRecord(clientId: string): Promise<DeviceRecord> {
  const record = await steps.getDeviceRecord({ clientId });
  if (!record || record.status !== 'active') {
    throw ApplicationFailure.nonRetryable(`device ${clientId} is not provisioned`, 'DeviceNotProvisioned');
  }
  return record;
}

export async function setDeviceAcl(request: { clientId: string; rules: AclRule[] }): Promise<{ clientId: string; rules: AclRule[] }> {
  const record = await activeRecord(request.clientId);
  await steps.writeAcl({ clientId: request.clientId, rules: effectiveAcl(request.rules) });
  await steps.saveDeviceRecord({ record: { ...record, acl: request.rules, updatedAt: new Date(Date.now()).toISOString() } });
  await steps.recordAudit({
    key: auditKey('acl'),
    clientId: request.clientId,
    operation: 'set-acl',
    outcome: 'succeeded',
    details: { rules: request.rules.length },
  });
  return { clientId: request.clientId, rules: request.rules };
}

export async function setDesiredSubscriptions(request: {
  clientId: string;
  subscriptions: Subscription[];
}): Promise<{ clientId: string; online: boolean; applied: number }> {
  const record = await activeRecord(request.clientId);
  await steps.saveDeviceRecord({
    record: { ...record, subscriptions: request.subscriptions, updatedAt: new Date(Date.now()).toISOString() },
  });
  const applied = await steps.applySubscriptions({
    clientId: request.clientId,
    desired: request.subscriptions,
    previous: record.subscriptions,
  });
  await tellPresenceWorkflow(request.clientId);
  await steps.recordAudit({
    key: auditKey('subscriptions'),
    clientId: request.clientId,
    operation: 'set-subscriptions',
    outcome: 'succeeded',
    details: { subscriptions: request.subscriptions.length, online: applied.online },
  });
  return { clientId: request.clientId, online: applied.online, applied: applied.applied };
}
