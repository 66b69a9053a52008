import {
  ApplicationFailure,
  condition,
  defineQuery,
  defineSignal,
  executeChild,
  proxyActivities,
  setHandler,
  upsertMemo,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { AclRule, Subscription } from '../domain/device';
import { failureMessage } from './failures';

/**
 * Fleet provisioning from a file. The caller sends the devices in chunks (signals, encrypted by the
 * payload codec); each chunk becomes one child workflow that provisions it with a handful of batched
 * activities (one import_users call, pooled ACL writes, one bulk Mongo write). So 10,000 devices make
 * about 20 children and a few hundred history events, far inside Temporal's limits
 * (reference limits-and-semantics.md §1).
 */

export const FLEET_CHUNK_SIZE = 1000;
const MAX_CHILDREN_IN_FLIGHT = 4;
const CHUNK_ARRIVAL_TIMEOUT = '10 minutes';

export interface FleetDevice {
  clientId: string;
  username: string;
  password: string;
  acl: AclRule[];
  subscriptions: Subscription[];
  tags: string[];
}

export interface FleetChunk {
  index: number;
  devices: FleetDevice[];
}

export interface FleetRequest {
  fleetId: string;
  total: number;
  chunkCount: number;
}

export interface FleetFailure {
  clientId: string;
  error: string;
}

export interface FleetChunkResult {
  provisioned: number;
  failed: number;
  failures: FleetFailure[];
}

export interface FleetResult extends FleetChunkResult {
  fleetId: string;
  total: number;
  status: 'completed';
}

export interface FleetProgress {
  total: number;
  chunksReceived: number;
  chunksDone: number;
  provisioned: number;
  failed: number;
}

export const fleetChunkSignal = defineSignal<[FleetChunk]>('fleetChunk');
export const fleetProgressQuery = defineQuery<FleetProgress>('fleetProgress');

/** Failures listed in the result; the full per-device list is in MongoDB (`fleet_results`). */
const MAX_LISTED_FAILURES = 50;

const batch = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 10 },
});

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

export async function provisionFleetChunk(request: { fleetId: string; chunk: FleetChunk }): Promise<FleetChunkResult> {
  const { fleetId, chunk } = request;
  const failed = new Map<string, string>();

  const imported = await batch.importCredentials({ devices: chunk.devices.map((d) => ({ username: d.username, password: d.password })) });
  if (imported.failed > 0) {
    // import_users reports counts only; check which users are missing, so one bad row does not fail its chunk.
    const missing = await batch.findMissingUsers({ usernames: chunk.devices.map((d) => d.username) });
    const missingSet = new Set(missing);
    for (const d of chunk.devices) if (missingSet.has(d.username)) failed.set(d.clientId, 'credentials were not imported');
  }

  const remaining = chunk.devices.filter((d) => !failed.has(d.clientId));
  const aclFailures = await batch.writeAclBatch({ entries: remaining.map((d) => ({ clientId: d.clientId, rules: d.acl })) });
  for (const f of aclFailures) failed.set(f.clientId, f.error);

  const provisioned = remaining.filter((d) => !failed.has(d.clientId));
  await batch.saveFleetDeviceRecords({
    devices: provisioned.map((d) => ({ clientId: d.clientId, username: d.username, acl: d.acl, subscriptions: d.subscriptions, tags: d.tags })),
  });
  await batch.applySubscriptionsBatch({
    entries: provisioned.filter((d) => d.subscriptions.length > 0).map((d) => ({ clientId: d.clientId, subscriptions: d.subscriptions })),
  });
  await batch.recordFleetResults({
    fleetId,
    results: chunk.devices.map((d) => {
      const error = failed.get(d.clientId);
      return error === undefined ? { clientId: d.clientId, status: 'provisioned' as const } : { clientId: d.clientId, status: 'failed' as const, error };
    }),
  });
  const failures = [...failed].map(([clientId, error]) => ({ clientId, error }));
  return { provisioned: provisioned.length, failed: failures.length, failures: failures.slice(0, MAX_LISTED_FAILURES) };
}
