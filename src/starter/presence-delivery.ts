import type { Client } from '@temporalio/client';
import { presenceWorkflowId, type PresenceEvent } from '../domain/presence';
import { AlarmLevelKey, DeviceIdKey, DeviceOperationKey, PresenceKey } from '../domain/search-attributes';
import { devicePresence, presenceEventsSignal } from '../workflows/presence';

/**
 * Hands presence events to the device's workflow, with the campaigns waiting for the device (see
 * presenceEventsSignal), starting the workflow if it is not running (signal-with-start is atomic:
 * reference temporal-typescript.md §2). Used by the webhook adapter and by reconciliation. The
 * search attributes are those of a new workflow; a running one keeps its own.
 */
export async function deliverPresenceEvents(
  client: Client,
  options: { clientId: string; taskQueue: string; events: PresenceEvent[]; campaigns?: string[]; continueAsNewAfter?: number },
): Promise<void> {
  const { clientId } = options;
  await client.workflow.signalWithStart(devicePresence, {
    workflowId: presenceWorkflowId(clientId),
    taskQueue: options.taskQueue,
    args: [{ clientId, ...(options.continueAsNewAfter ? { continueAsNewAfter: options.continueAsNewAfter } : {}) }],
    signal: presenceEventsSignal,
    signalArgs: [{ events: options.events, ...(options.campaigns?.length ? { campaigns: options.campaigns } : {}) }],
    typedSearchAttributes: [
      { key: DeviceIdKey, value: clientId },
      { key: DeviceOperationKey, value: 'presence' },
      { key: PresenceKey, value: 'unknown' },
      { key: AlarmLevelKey, value: 0 },
    ],
  });
}
