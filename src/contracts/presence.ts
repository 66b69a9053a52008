import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { AlarmAction, PresenceEvent } from '../domain/presence';
import type { AlarmView, PresenceState, PresenceView, RecentEvent } from '../domain/presence-machine';

/**
 * The device presence workflow's contract (workflow `devicePresence`, one per device): its messages,
 * its id and the views clients read. Used by the workflow, the webhook adapter and reconciliation
 * (which deliver events) and the client library (which reads and steers it).
 */

export { presenceWorkflowId } from '../domain/presence';
export type { AlarmView, PresenceView, RecentEvent };

/**
 * Presence events for this device. `campaigns`: campaigns waiting to publish to the device, found by
 * the webhook adapter for a connect (campaign_waiting); the workflow signals their `deviceOnline`
 * once the events leave the device online, so waiting targets are delivered without polling.
 */
export const presenceEventsSignal = defineSignal<[{ events: PresenceEvent[]; campaigns?: string[] }]>('presenceEvents');
export const presenceQuery = defineQuery<PresenceView | null>('presence');
export const alarmQuery = defineQuery<AlarmView | null>('alarm');
export const recentEventsQuery = defineQuery<RecentEvent[]>('recentEvents');
export const acknowledgeAlarmUpdate = defineUpdate<AlarmView, [AlarmAction]>('acknowledgeAlarm');
export const clearAlarmUpdate = defineUpdate<AlarmView, [AlarmAction]>('clearAlarm');

/**
 * Temporal refuses more than 10,000 signals per run and suggests continue-as-new after ~4,096 history events
 * (https://docs.temporal.io/workflow-execution/limits); a flap costs about ten events, so 1,000 messages
 * keeps every run far below both.
 */
export const DEFAULT_CONTINUE_AS_NEW_AFTER = 1_000;

export interface DevicePresenceInput {
  clientId: string;
  /** Continue-as-new after this many signals and updates (tests force it with a small number). */
  continueAsNewAfter?: number;
  /** The state a previous run handed over. */
  carried?: PresenceState;
}
