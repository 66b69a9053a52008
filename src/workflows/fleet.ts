import {
  ApplicationFailure,
  condition,
  executeChild,
  proxyActivities,
  setHandler,
  upsertMemo,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { compensating, longRunning, withAttempts } from './activity-options';
import { deviceInputProblems, renderedAcl } from '../domain/acl-match';
import {
  fleetChunkSignal,
  fleetProgressQuery,
  type FleetChunk,
  type FleetChunkResult,
  type FleetDevice,
  type FleetFailure,
  type FleetProgress,
  type FleetRequest,
  type FleetResult,
} from '../contracts/fleet';
import { failureMessage } from '../domain/failures';

/**
 * Fleet provisioning from a file. The caller sends the devices in chunks (signals, encrypted by the
 * payload codec); each chunk becomes one child workflow that provisions it with a handful of batched
 * activities (one import_users call, pooled ACL writes, one bulk Mongo write). So 10,000 devices make
 * about 20 children and a few hundred history events, far inside Temporal's limits
 * (https://docs.temporal.io/workflow-execution/limits).
 */

const MAX_CHILDREN_IN_FLIGHT = 4;
const CHUNK_ARRIVAL_TIMEOUT = '10 minutes';

/** Failures listed in the result; the full per-device list is in MongoDB (`fleet_results`). */
const MAX_LISTED_FAILURES = 50;

/** A chunk step that keeps failing fails its devices (they are settled), not the fleet. */
const batch = proxyActivities<Activities>(withAttempts(longRunning, 10));
/** Settling after a failure must not give up quickly. */
const settle = proxyActivities<Activities>({ ...longRunning, retry: compensating.retry });

export async function provisionFleet(request: FleetRequest): Promise<FleetResult> {
  upsertMemo({ fleetId: request.fleetId, devices: request.total });
  const pending: FleetChunk[] = [];
  const seen = new Set<number>();
  const progress: FleetProgress = { total: request.total, chunksReceived: 0, chunksDone: 0, provisioned: 0, failed: 0 };
  const failures: FleetFailure[] = [];
  let inFlight = 0;

  setHandler(fleetChunkSignal, (chunk) => {
    if (seen.has(chunk.index) || chunk.index < 0 || chunk.index >= request.chunkCount) return; // a duplicate or stray signal
    seen.add(chunk.index);
    pending.push(chunk);
    progress.chunksReceived += 1;
  });
  setHandler(fleetProgressQuery, () => progress);

  const launch = (chunk: FleetChunk): void => {
    inFlight += 1;
    const outcome = executeChild(provisionFleetChunk, {
      workflowId: `${workflowInfo().workflowId}/chunk-${chunk.index}`,
      args: [{ fleetId: request.fleetId, chunk }],
    });
    void outcome
      .then(
        (result) => {
          progress.provisioned += result.provisioned;
          progress.failed += result.failed;
          failures.push(...result.failures.slice(0, MAX_LISTED_FAILURES - failures.length));
        },
        (err: unknown) => {
          progress.failed += chunk.devices.length;
          const error = failureMessage(err);
          for (const device of chunk.devices.slice(0, MAX_LISTED_FAILURES - failures.length)) failures.push({ clientId: device.clientId, error });
        },
      )
      .finally(() => {
        inFlight -= 1;
        progress.chunksDone += 1;
      });
  };

  while (progress.chunksDone < request.chunkCount) {
    const moved = await condition(
      () => (pending.length > 0 && inFlight < MAX_CHILDREN_IN_FLIGHT) || progress.chunksDone === request.chunkCount,
      CHUNK_ARRIVAL_TIMEOUT,
    );
    if (!moved && inFlight === 0) {
      throw ApplicationFailure.nonRetryable(
        `only ${progress.chunksReceived} of ${request.chunkCount} device chunks arrived`,
        'FleetChunksMissing',
      );
    }
    while (pending.length > 0 && inFlight < MAX_CHILDREN_IN_FLIGHT) {
      const chunk = pending.shift();
      if (chunk) launch(chunk);
    }
  }
  return { fleetId: request.fleetId, total: request.total, status: 'completed', provisioned: progress.provisioned, failed: progress.failed, failures };
}

/**
 * Provisions one chunk in the order single provisioning uses: rules first, credentials last, then
 * the records of the devices that have both. Every EMQX request is retried per device, so a failure
 * is one device's and names it. Devices that did not finish (their credentials failed, or the chunk
 * failed for good) are settled against EMQX: complete ones are recorded, the rest are removed, so
 * EMQX and the records agree and no device can connect without its ACL.
 */
export async function provisionFleetChunk(request: { fleetId: string; chunk: FleetChunk }): Promise<FleetChunkResult> {
  const { fleetId, chunk } = request;
  const failed = new Map<string, string>();
  for (const d of chunk.devices) {
    const problems = deviceInputProblems(d);
    if (problems.length > 0) failed.set(d.clientId, problems.join('; '));
  }
  const checked = chunk.devices.filter((d) => !failed.has(d.clientId));
  try {
    const aclFailures = await batch.writeAclBatch({
      entries: checked.map((d) => ({ clientId: d.clientId, rules: renderedAcl(d.acl, { clientId: d.clientId, username: d.username }) })),
    });
    for (const f of aclFailures) failed.set(f.clientId, `ACL not written: ${f.error}`);
    const withAcl = checked.filter((d) => !failed.has(d.clientId));

    const credentialFailures = await batch.importCredentialsBatch({ devices: withAcl.map((d) => ({ clientId: d.clientId, hash: d.credentials })) });
    for (const f of credentialFailures) failed.set(f.clientId, `credentials not stored: ${f.error}`);

    const unfinished = [...aclFailures, ...credentialFailures].map((f) => f.clientId);
    const settled = unfinished.length > 0 ? await settle.settleFleetDevices({ clientIds: unfinished }) : [];
    const kept = new Set(settled.filter((s) => s.state === 'complete').map((s) => s.clientId));
    for (const f of credentialFailures) {
      failed.set(f.clientId, kept.has(f.clientId) ? `${failed.get(f.clientId)}; EMQX keeps its earlier credentials and the new rules: provision it again` : `${failed.get(f.clientId)}; its rules were removed`);
    }

    const recorded = withAcl.filter((d) => !failed.has(d.clientId) || kept.has(d.clientId));
    await batch.saveFleetDeviceRecords({
      devices: recorded.map((d) => ({ clientId: d.clientId, username: d.username, acl: d.acl, subscriptions: d.subscriptions, tags: d.tags })),
    });
    await batch.applySubscriptionsBatch({
      entries: recorded.filter((d) => !failed.has(d.clientId) && d.subscriptions.length > 0).map((d) => ({ clientId: d.clientId, subscriptions: d.subscriptions })),
    });
  } catch (err) {
    await settleFailedChunk(checked, failureMessage(err), failed);
  }
  await batch.recordFleetResults({
    fleetId,
    results: chunk.devices.map((d) => {
      const error = failed.get(d.clientId);
      return error === undefined ? { clientId: d.clientId, status: 'provisioned' as const } : { clientId: d.clientId, status: 'failed' as const, error };
    }),
  });
  const failures = [...failed].map(([clientId, error]) => ({ clientId, error }));
  return { provisioned: chunk.devices.length - failures.length, failed: failures.length, failures: failures.slice(0, MAX_LISTED_FAILURES) };
}

/**
 * A chunk step failed for good: every device of the chunk is settled against EMQX, devices EMQX
 * holds completely are recorded (and count as provisioned), the others fail with the chunk's error.
 */
async function settleFailedChunk(devices: FleetDevice[], error: string, failed: Map<string, string>): Promise<void> {
  const settled = await settle.settleFleetDevices({ clientIds: devices.map((d) => d.clientId) });
  const complete = new Set(settled.filter((s) => s.state === 'complete').map((s) => s.clientId));
  const recorded = devices.filter((d) => complete.has(d.clientId));
  await settle.saveFleetDeviceRecords({
    devices: recorded.map((d) => ({ clientId: d.clientId, username: d.username, acl: d.acl, subscriptions: d.subscriptions, tags: d.tags })),
  });
  for (const d of devices) {
    if (complete.has(d.clientId)) failed.delete(d.clientId);
    else failed.set(d.clientId, `not provisioned (its partial setup was removed): ${error}`);
  }
}
