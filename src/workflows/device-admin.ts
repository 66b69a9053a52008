import {
  ApplicationFailure,
  CancellationScope,
  getExternalWorkflowHandle,
  log,
  proxyActivities,
  upsertMemo,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { compensating, standard, withAttempts } from './activity-options';
import { deviceInputProblems, renderedAcl } from '../domain/acl-match';
import {
  deviceRecordChangedSignal,
  type DeprovisionResult,
  type ProvisionRequest,
  type ProvisionResult,
  type RotateRequest,
  type RotateResult,
} from '../contracts/device-admin';
import { presenceWorkflowId } from '../contracts/presence';
import type { AclRule, DeprovisionStep, DeviceRecord, Subscription } from '../domain/schemas/device';
import { usernameOf } from '../domain/device';
import { failureMessage } from '../domain/failures';

/**
 * Device-administration workflows: provision (a saga), deprovision, rotate credentials, kick, set
 * ACL, set desired subscriptions. Each call to EMQX or MongoDB is one idempotent activity; a step
 * that fails for good throws a non-retryable failure, and the saga undoes what it had done.
 */

/** Fewer tries than the standard: a step that keeps failing rolls the saga back within a minute. */
const steps = proxyActivities<Activities>(withAttempts(standard, 8));
/** Compensations must not give up quickly: they run after a failure and keep retrying longer. */
const undo = proxyActivities<Activities>(compensating);

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
 */
async function tellPresenceWorkflow(clientId: string): Promise<void> {
  try {
    await getExternalWorkflowHandle(presenceWorkflowId(clientId)).signal(deviceRecordChangedSignal);
  } catch {
    // No presence workflow running: nothing to tell.
  }
}

interface AuditInput {
  clientId: string;
  operation: string;
  outcome: 'succeeded' | 'failed' | 'compensated';
  details: Record<string, string | number | boolean | null>;
}

/**
 * Records this run's audit entry for `step`, keyed by workflow id, run id and step so a retried
 * activity writes it once. An outcome other than success is recorded with the compensations'
 * patience: it is written after something already failed.
 */
function audit(step: string, entry: AuditInput): Promise<void> {
  const info = workflowInfo();
  const recordAudit = entry.outcome === 'succeeded' ? steps.recordAudit : undo.recordAudit;
  return recordAudit({ key: `${info.workflowId}/${info.runId}/${step}`, ...entry });
}

/** Refuses bad input before anything is written; the client checks the same, this guards other callers. */
function refuseInvalid(problems: string[]): void {
  if (problems.length > 0) throw ApplicationFailure.nonRetryable(problems.join('; '), 'InvalidDeviceInput');
}

/**
 * Provisions as a saga in the order that never lets a device in without its rules: the ACL first,
 * the record, the credentials last; on failure the compensations run in reverse (credentials this
 * run created are removed and their session kicked before the ACL goes).
 */
export async function provisionDevice(request: ProvisionRequest): Promise<ProvisionResult> {
  const { clientId } = request;
  const username = usernameOf(request);
  refuseInvalid(deviceInputProblems(request));
  upsertMemo({ clientId, username, aclRules: request.acl.length, subscriptions: request.subscriptions.length });
  const compensations: (() => Promise<unknown>)[] = [];
  try {
    const previousAcl = await steps.readAcl({ clientId });
    await steps.writeAcl({ clientId, rules: renderedAcl(request.acl, { clientId, username }) });
    compensations.unshift(() => (previousAcl ? undo.writeAcl({ clientId, rules: previousAcl }) : undo.removeAcl({ clientId })));

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
    compensations.unshift(() => (previous ? undo.saveDeviceRecord({ record: previous }) : undo.deleteDeviceRecord({ clientId })));

    const credentials = await steps.importCredentialHash({ clientId, hash: request.credentials });
    if (credentials.created) {
      compensations.unshift(async () => {
        await undo.removeCredentials({ clientId });
        await undo.kickClient({ clientId });
      });
    }

    const applied = await steps.applySubscriptions({
      clientId,
      desired: request.subscriptions,
      previous: previous?.subscriptions ?? [],
    });
    await tellPresenceWorkflow(clientId);

    await audit('provision', {
      clientId,
      operation: 'provision',
      outcome: 'succeeded',
      details: { username, aclRules: request.acl.length, subscriptions: request.subscriptions.length, generatedPassword: request.passwordGenerated },
    });
    return { clientId, username, status: 'completed', online: applied.online, subscriptionsApplied: applied.applied };
  } catch (err) {
    const reason = failureMessage(err);
    await runCompensations(compensations);
    await CancellationScope.nonCancellable(() =>
      audit('provision', { clientId, operation: 'provision', outcome: 'compensated', details: { reason } }),
    );
    throw ApplicationFailure.nonRetryable(`provisioning ${clientId} failed and was rolled back: ${reason}`, 'ProvisioningFailed');
  }
}

/**
 * Credentials first (the device cannot log in again), then the kick (its live session ends), and
 * only then the ACL: no session is ever left without its rules. A step that fails for good stops
 * the run; the record says `deprovisioning-failed` and at which step, and running deprovision
 * again finishes the job (every step is idempotent).
 */
export async function deprovisionDevice(request: { clientId: string }): Promise<DeprovisionResult> {
  const { clientId } = request;
  const record = await steps.getDeviceRecord({ clientId });
  upsertMemo({ clientId, username: record?.username ?? clientId });
  let step: DeprovisionStep = 'mark-record';
  try {
    if (record) await steps.saveDeviceRecord({ record: { ...record, status: 'deprovisioning', updatedAt: new Date(Date.now()).toISOString() } });
    step = 'remove-credentials';
    const removed = await steps.removeCredentials({ clientId });
    step = 'kick';
    const kicked = await steps.kickClient({ clientId });
    step = 'remove-acl';
    await steps.removeAcl({ clientId });
    step = 'save-record';
    if (record) {
      const { failure: _failure, ...rest } = record;
      await steps.saveDeviceRecord({
        record: { ...rest, status: 'deprovisioned', subscriptions: [], acl: [], updatedAt: new Date(Date.now()).toISOString() },
      });
      await tellPresenceWorkflow(clientId);
    }
    await audit('deprovision', {
      clientId,
      operation: 'deprovision',
      outcome: 'succeeded',
      details: { kicked: kicked.kicked, hadCredentials: removed.existed },
    });
    return { clientId, status: 'completed', kicked: kicked.kicked, hadCredentials: removed.existed };
  } catch (err) {
    const reason = failureMessage(err);
    const at = new Date(Date.now()).toISOString();
    await CancellationScope.nonCancellable(async () => {
      if (record) {
        await undo.saveDeviceRecord({ record: { ...record, status: 'deprovisioning-failed', failure: { operation: 'deprovision', step, error: reason, at }, updatedAt: at } });
      }
      await audit('deprovision', { clientId, operation: 'deprovision', outcome: 'failed', details: { step, reason } });
    });
    const state =
      step === 'mark-record' || step === 'remove-credentials'
        ? 'its credentials may still be valid'
        : 'its credentials are removed, so it cannot connect again, and its ACL stays until the run completes';
    throw ApplicationFailure.nonRetryable(
      `deprovisioning ${clientId} stopped at step ${step}: ${reason}; ${state}; run deprovision again to finish`,
      'DeprovisioningFailed',
    );
  }
}

/**
 * The new password replaces the old one before the kick, so the kicked device can only come back
 * with the new one; its ACL is never touched, so its session keeps its rules throughout.
 */
export async function rotateCredentials(request: RotateRequest): Promise<RotateResult> {
  const { clientId } = request;
  refuseInvalid(deviceInputProblems({ clientId, acl: [], subscriptions: [] }));
  const record = await activeRecord(clientId);
  upsertMemo({ clientId, username: record.username, kick: request.kick });
  await steps.replaceCredentialHash({ clientId, hash: request.credentials });
  const now = new Date(Date.now()).toISOString();
  await steps.saveDeviceRecord({ record: { ...record, credentialsRotatedAt: now, updatedAt: now } });
  let kicked = false;
  if (request.kick) {
    try {
      kicked = (await steps.kickClient({ clientId })).kicked;
    } catch (err) {
      throw ApplicationFailure.nonRetryable(
        `rotating ${clientId}: the new password is in place but the kick failed: ${failureMessage(err)}; its current session keeps its ACL until it disconnects; run kick ${clientId}`,
        'RotationKickFailed',
      );
    }
  }
  await audit('rotate', {
    clientId,
    operation: 'rotate-credentials',
    outcome: 'succeeded',
    details: { kicked, generatedPassword: request.passwordGenerated },
  });
  return { clientId, status: 'completed', kicked };
}

export async function kickDevice(request: { clientId: string }): Promise<{ clientId: string; kicked: boolean }> {
  const { kicked } = await steps.kickClient(request);
  await audit('kick', {
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

/** The device's desired subscriptions must stay allowed by its new rules (EMQX does not check proxy subscriptions). */
export async function setDeviceAcl(request: { clientId: string; rules: AclRule[] }): Promise<{ clientId: string; rules: AclRule[] }> {
  const record = await activeRecord(request.clientId);
  refuseInvalid(deviceInputProblems({ clientId: request.clientId, username: record.username, acl: request.rules, subscriptions: record.subscriptions }));
  await steps.writeAcl({ clientId: request.clientId, rules: renderedAcl(request.rules, { clientId: request.clientId, username: record.username }) });
  await steps.saveDeviceRecord({ record: { ...record, acl: request.rules, updatedAt: new Date(Date.now()).toISOString() } });
  await audit('acl', {
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
  refuseInvalid(deviceInputProblems({ clientId: request.clientId, username: record.username, acl: record.acl, subscriptions: request.subscriptions }));
  await steps.saveDeviceRecord({
    record: { ...record, subscriptions: request.subscriptions, updatedAt: new Date(Date.now()).toISOString() },
  });
  const applied = await steps.applySubscriptions({
    clientId: request.clientId,
    desired: request.subscriptions,
    previous: record.subscriptions,
  });
  await tellPresenceWorkflow(request.clientId);
  await audit('subscriptions', {
    clientId: request.clientId,
    operation: 'set-subscriptions',
    outcome: 'succeeded',
    details: { subscriptions: request.subscriptions.length, online: applied.online },
  });
  return { clientId: request.clientId, online: applied.online, applied: applied.applied };
}
