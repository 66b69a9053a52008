import type { Client } from '@temporalio/client';
import { presenceWorkflowId, type PresenceEvent } from '../domain/presence';
import { AlarmLevelKey, DeviceIdKey, DeviceOperationKey, PresenceKey } from '../domain/search-attributes';
import { devicePresence, presenceEventsSignal, type DevicePresenceInput } from '../workflows/presence';

/**
 * How a device's workflow is started when a signal finds it not running (signal-with-start is
 * atomic: reference temporal-typescript.md §2). The search attributes are those of a new workflow;
 * a running one keeps its own.
 */
function deviceWorkflowStart(options: { clientId: string; taskQueue: string; continueAsNewAfter?: number | undefined }) {
  const { clientId } = options;
  return {
    workflowId: presenceWorkflowId(clientId),
    taskQueue: options.taskQueue,
    args: [{ clientId, ...(options.continueAsNewAfter ? { continueAsNewAfter: options.continueAsNewAfter } : {}) }] as [DevicePresenceInput],
    typedSearchAttributes: [
      { key: DeviceIdKey, value: clientId },
      { key: DeviceOperationKey, value: 'presence' },
      { key: PresenceKey, value: 'unknown' },
      { key: AlarmLevelKey, value: 0 },
    ],
  };
}

/**
 * Hands presence events to the device's workflow, with the campaigns waiting for the device (see
 * presenceEventsSignal). Used by the webhook adapter and by reconciliation.
 */
export async function deliverPresenceEvents(
  client: Client,
  options: { clientId: string; taskQueue: string; events: PresenceEvent[]; campaigns?: string[]; continueAsNewAfter?: number },
): Promise<void> {
  await client.workflow.signalWithStart(devicePresence, {
    ...deviceWorkflowStart(options),
    signal: presenceEventsSignal,
    signalArgs: [{ events: options.events, ...(options.campaigns?.length ? { campaigns: options.campaigns } : {}) }],
  });
}
