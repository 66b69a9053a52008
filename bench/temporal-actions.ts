import { WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { mapPooled } from '../src/activities/failures';

/**
 * Temporal Cloud actions counted from a workflow's own history, by the rules of
 * https://docs.temporal.io/cloud/actions:
 * - `started`: a run started (client start, continue-as-new). A signal-with-start is one action in
 *   all: the signal it records right after the start (event 2 of the run) is not counted again.
 * - `signal`: a signal received (from a client or another workflow); `externalSignal`: a signal
 *   this workflow sent (counted on the sender's side only, so sum over senders without receivers).
 * - `timer`: a timer started (TypeScript's `condition(fn, timeout)` starts one).
 * - `activity`: an activity scheduled, plus one per retry (the started event's attempt).
 * - `localActivity`: the local activity markers of one workflow task, one action together.
 * - `upsert`: a search attribute upsert (those given at start are free).
 * - `update`: an update accepted (rejected updates are billed too but leave no event).
 * - `child`: a child workflow initiated, two actions (its start and its execution).
 * Queries and activity heartbeats are billed but leave no event: not counted. Workflow tasks are
 * not actions.
 */
export interface ActionCounts {
  started: number;
  signal: number;
  externalSignal: number;
  timer: number;
  activity: number;
  localActivity: number;
  upsert: number;
  update: number;
  child: number;
}

export const ACTION_KINDS: readonly (keyof ActionCounts)[] = ['started', 'signal', 'externalSignal', 'timer', 'activity', 'localActivity', 'upsert', 'update', 'child'];

export const noActions = (): ActionCounts => ({ started: 0, signal: 0, externalSignal: 0, timer: 0, activity: 0, localActivity: 0, upsert: 0, update: 0, child: 0 });

export function totalActions(counts: ActionCounts): number {
  return ACTION_KINDS.reduce((sum, kind) => sum + counts[kind], 0);
}

export function addActions(into: ActionCounts, more: ActionCounts): ActionCounts {
  for (const kind of ACTION_KINDS) into[kind] += more[kind];
  return into;
}

/** The kinds that occurred, for reports (zeros left out). */
export function nonZero(counts: ActionCounts): Partial<ActionCounts> {
  return Object.fromEntries(ACTION_KINDS.filter((k) => counts[k] !== 0).map((k) => [k, counts[k]]));
}

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
const { EventType } = temporal.api.enums.v1;

export function eventMs(event: HistoryEvent): number {
  return Number(event.eventTime?.seconds ?? 0) * 1000 + Math.floor((event.eventTime?.nanos ?? 0) / 1e6);
}

/** Actions of one run's events whose time falls in [from, to). */
export function countActions(events: readonly HistoryEvent[], window: { from?: number; to?: number } = {}): ActionCounts {
  const counts = noActions();
  const from = window.from ?? -Infinity;
  const to = window.to ?? Infinity;
  const markerTasks = new Set<string>();
  for (const event of events) {
    const at = eventMs(event);
    if (at < from || at >= to) continue;
    switch (event.eventType) {
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        counts.started++;
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
        // Signal-with-start: the signal is recorded right after the start, before any workflow task.
        if (Number(event.eventId) !== 2) counts.signal++;
        break;
      case EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
        counts.externalSignal++;
        break;
      case EventType.EVENT_TYPE_TIMER_STARTED:
        counts.timer++;
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
        counts.activity++;
        break;
      case EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
        counts.activity += Math.max(0, (event.activityTaskStartedEventAttributes?.attempt ?? 1) - 1);
        break;
      case EventType.EVENT_TYPE_MARKER_RECORDED: {
        const marker = event.markerRecordedEventAttributes;
        if (marker?.markerName === 'core_local_activity') markerTasks.add(String(marker.workflowTaskCompletedEventId));
        break;
      }
      case EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
        counts.upsert++;
        break;
      case EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
        counts.update++;
        break;
      case EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
        counts.child += 2;
        break;
      default:
        break;
    }
  }
  counts.localActivity = markerTasks.size;
  return counts;
}

/**
 * Actions of a workflow in [from, to), over its current run and the runs before it (followed back
 * through continue-as-new until a run started before `from`).
 */
export async function workflowActions(client: Client, workflowId: string, window: { from?: number; to?: number } = {}): Promise<ActionCounts> {
  const counts = noActions();
  let runId: string | undefined;
  for (;;) {
    const handle: WorkflowHandle = client.workflow.getHandle(workflowId, runId);
    const events = (await handle.fetchHistory()).events ?? [];
    addActions(counts, countActions(events, window));
    const first = events[0];
    const previous = first?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId;
    if (!first || !previous || eventMs(first) < (window.from ?? -Infinity)) return counts;
    runId = previous;
  }
}

/** The sum over many workflows (one that never started counts nothing). */
export async function fleetActions(client: Client, workflowIds: readonly string[], window: { from?: number; to?: number } = {}): Promise<ActionCounts> {
  const all = await mapPooled(workflowIds, 32, (id) =>
    workflowActions(client, id, window).catch((err: unknown) => {
      if (err instanceof WorkflowNotFoundError) return noActions();
      throw err;
    }),
  );
  return all.reduce(addActions, noActions());
}
