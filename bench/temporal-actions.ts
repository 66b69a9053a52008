import { temporal } from '@temporalio/proto';

/**
 * Temporal Cloud actions counted from a workflow's own history, by kind, as
 * https://docs.temporal.io/cloud/actions bills them: a workflow start (client start or
 * continue-as-new), each activity attempt (a retry is billed again), each timer, each signal
 * received and sent, each update, each search attribute or memo upsert, and the local activities
 * of one workflow task as one action (their markers). Not in a history, so not counted here:
 * activity heartbeats that reach the server (the SDK sends at most one per 80% of the heartbeat
 * timeout per activity), queries, and workflow tasks (not billed).
 */

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
const { EventType } = temporal.api.enums.v1;

const BILLED_EVENTS: ReadonlyMap<temporal.api.enums.v1.EventType, string> = new Map([
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED, 'workflowStart'],
  [EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, 'activity'],
  [EventType.EVENT_TYPE_TIMER_STARTED, 'timer'],
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED, 'signalReceived'],
  [EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED, 'signalSent'],
  [EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED, 'update'],
  [EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES, 'upsert'],
  [EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED, 'upsert'],
]);

export interface ActionCount {
  total: number;
  byKind: Record<string, number>;
}

export function emptyActionCount(): ActionCount {
  return { total: 0, byKind: {} };
}

/** Adds the billed actions of one run's history to `into`. */
export function countActions(events: readonly HistoryEvent[], into: ActionCount = emptyActionCount()): ActionCount {
  const add = (kind: string, n = 1): void => {
    if (n <= 0) return;
    into.byKind[kind] = (into.byKind[kind] ?? 0) + n;
    into.total += n;
  };
  const localActivityTasks = new Set<string>();
  for (const event of events) {
    const kind = event.eventType ? BILLED_EVENTS.get(event.eventType) : undefined;
    if (kind) add(kind);
    // Only the last attempt's start is recorded: earlier attempts are retries, billed too.
    const attempt = event.activityTaskStartedEventAttributes?.attempt ?? 1;
    if (attempt > 1) add('activityRetry', attempt - 1);
    const marker = event.markerRecordedEventAttributes;
    if (marker) localActivityTasks.add(String(marker.workflowTaskCompletedEventId ?? event.eventId));
  }
  add('localActivityTask', localActivityTasks.size);
  return into;
}
