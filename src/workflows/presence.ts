import {
  allHandlersFinished,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  proxyActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { notification, standard, untilDone } from './activity-options';
import { campaignWorkflowId, deviceOnlineSignal } from '../contracts/campaign';
import { alarmActionProblem, isOpen, type AlarmAction, type PresenceEvent } from '../domain/presence';
import { AlarmLevelKey, DeviceIdKey, DeviceOperationKey, PresenceKey } from '../domain/search-attributes';
import { deviceRecordChangedSignal } from '../contracts/device-admin';
import {
  acknowledgeAlarmUpdate,
  alarmQuery,
  clearAlarmUpdate,
  DEFAULT_CONTINUE_AS_NEW_AFTER,
  presenceEventsSignal,
  presenceQuery,
  recentEventsQuery,
  type DevicePresenceInput,
} from '../contracts/presence';
import {
  acknowledge,
  acknowledgeRefusal,
  alarmView,
  applyEvents,
  clearByOperator,
  clearRefusal,
  fireDueTimers,
  initialState,
  nextDeadline,
  openAlarmLevel,
  presenceView,
  timerToStart,
  updatePolicy,
  type AlarmView,
  type PresenceEffect,
  type PresenceState,
} from '../domain/presence-machine';

/**
 * One long-lived workflow per device, id `device/<clientId>`: it keeps the device's presence from
 * EMQX's connect/disconnect events (delivered by the webhook adapter with signal-with-start), runs
 * the offline alarm (grace, escalation, ack, clear, flapping) and re-applies the desired proxy
 * subscriptions on every connect. The rules live in src/domain/presence-machine.ts; this file runs them and
 * carries out their effects.
 */

/** MongoDB steps: retried until they succeed (a lost alarm record is worse than a late one). */
const store = proxyActivities<Activities>(untilDone);
const emqx = proxyActivities<Activities>(standard);
/** The alarm webhook: several minutes of retries, then the level stays recorded in MongoDB only. */
const notify = proxyActivities<Activities>(notification);

export async function devicePresence(input: DevicePresenceInput): Promise<void> {
  const { clientId } = input;
  const messageLimit = input.continueAsNewAfter ?? DEFAULT_CONTINUE_AS_NEW_AFTER;
  let state: PresenceState | null = input.carried ?? null;
  const inbox: PresenceEvent[] = [];
  const effects: PresenceEffect[] = [];
  let effectsQueued = 0;
  let effectsDone = 0;
  let background = 0;
  let policyStale = false;
  let messages = 0;
  /** Campaigns that came with the events in `inbox`. */
  const hinted = new Set<string>();
  /** Campaigns to wake once the new session's subscriptions are live (the next applySubscriptions effect). */
  const wakeWithSessionStart: string[] = [];

  const enqueue = (more: PresenceEffect[]): number => {
    effects.push(...more);
    effectsQueued += more.length;
    return effectsQueued;
  };

  setHandler(presenceEventsSignal, ({ events, campaigns }) => {
    messages++;
    // A loop, not push(...events): spreading tens of thousands of arguments can overflow the stack.
    for (const event of Array.isArray(events) ? events : []) inbox.push(event);
    for (const campaignId of Array.isArray(campaigns) ? campaigns : []) if (typeof campaignId === 'string') hinted.add(campaignId);
  });
  setHandler(deviceRecordChangedSignal, () => {
    messages++;
    policyStale = true;
  });
  setHandler(presenceQuery, () => (state ? presenceView(state) : null));
  setHandler(alarmQuery, () => alarmView(state));
  setHandler(recentEventsQuery, () => [...(state?.recent ?? [])].reverse());

  /** Operator actions run their effects through the same queue, so MongoDB sees every change in order. */
  const operatorAction = (act: (s: PresenceState, note: string | undefined, now: number) => PresenceEffect[]) => async (action: AlarmAction): Promise<AlarmView> => {
    messages++;
    const subject = state as PresenceState; // the validator refused the update while there is no state
    const target = enqueue(act(subject, action.note, Date.now()));
    await condition(() => effectsDone >= target);
    return alarmView(subject) as AlarmView;
  };
  const validated = (refusal: (s: PresenceState | null) => string | null) => (action: AlarmAction): void => {
    const problem = alarmActionProblem(action);
    if (problem) throw new Error(problem);
    const reason = refusal(state);
    if (reason) throw new Error(reason);
  };
  setHandler(acknowledgeAlarmUpdate, operatorAction(acknowledge), { validator: validated(acknowledgeRefusal) });
  setHandler(clearAlarmUpdate, operatorAction(clearByOperator), { validator: validated(clearRefusal) });

  /**
   * Tells campaigns waiting for the device that it is online (workflow signals, no activity). One
   * that has ended refuses the signal, which is fine.
   */
  const signalCampaigns = (campaignIds: readonly string[]): void => {
    for (const campaignId of campaignIds) {
      runInBackground(getExternalWorkflowHandle(campaignWorkflowId(campaignId)).signal(deviceOnlineSignal, clientId), 'campaign wake-up', () =>
        log.debug('campaign no longer running', { clientId, campaignId }),
      );
    }
  };

  const runInBackground = (work: Promise<unknown>, what: string, onFailure?: () => void): void => {
    background++;
    void work
      .catch((err: unknown) => (onFailure ? onFailure() : log.warn(`${what} failed for good`, { clientId, error: err instanceof Error ? err.message : String(err) })))
      .finally(() => background--);
  };

  const carryOut = async (): Promise<void> => {
    while (effects.length > 0) {
      const effect = effects.shift() as PresenceEffect;
      switch (effect.type) {
        case 'recordAlarm':
          await store.recordAlarm({ alarm: effect.alarm });
          break;
        case 'notifyAlarm':
          if (current.policy.notifies !== false) runInBackground(notify.notifyAlarm({ alarm: effect.alarm, change: effect.change }), 'alarm notification');
          break;
        case 'applySubscriptions': {
          const hintedNow = wakeWithSessionStart.splice(0);
          // Most devices have none: skip the activity (a connect storm is then signals only) and
          // wake the campaigns at once.
          if (current.policy.desiredSubscriptions === 0) {
            signalCampaigns(hintedNow);
            break;
          }
          // Campaigns are woken once the subscriptions are live, or they would publish to a device
          // not yet subscribed and wait again; the activity also finds campaigns that began waiting
          // meanwhile. A device gone again wakes nothing: its next connect brings its own.
          runInBackground(
            emqx.reapplySubscriptionsAndFindCampaigns({ clientId, connectedAt: effect.connectedAt }).then(
              (result) => {
                if (result.online) signalCampaigns([...new Set([...hintedNow, ...result.campaigns])]);
              },
              (err: unknown) => {
                signalCampaigns(hintedNow);
                throw err;
              },
            ),
            'subscription re-apply',
          );
          break;
        }
      }
      effectsDone++;
    }
  };

  // What this run's search attributes already say (set at start, or carried by continue-as-new):
  // an upsert is an action (https://docs.temporal.io/cloud/actions), so only a change is upserted.
  const initial = workflowInfo().typedSearchAttributes;
  const labelled = initial.get(DeviceIdKey) === clientId && initial.get(DeviceOperationKey) === 'presence';
  let published = labelled ? { presence: initial.get(PresenceKey) ?? '', level: initial.get(AlarmLevelKey) ?? -1 } : { presence: '', level: -1 };
  const publishSearchAttributes = (s: PresenceState): void => {
    const level = openAlarmLevel(s);
    if (published.presence === s.presence && published.level === level) return;
    upsertSearchAttributes([
      { key: DeviceIdKey, value: clientId },
      { key: DeviceOperationKey, value: 'presence' },
      { key: PresenceKey, value: s.presence },
      { key: AlarmLevelKey, value: level },
    ]);
    published = { presence: s.presence, level };
  };

  /**
   * Timers (see timerToStart): a running timer is kept when the deadline moves later and is never
   * cancelled; one that fires with nothing due costs a workflow task, not an action.
   */
  let timerAt: number | null = null;
  let timersFired = 0;
  const armTimer = (deadline: number): void => {
    const at = timerToStart(deadline, timerAt);
    if (at === null) return;
    timerAt = at;
    void sleep(at - Date.now()).then(
      () => {
        timersFired++;
        if (timerAt === at) timerAt = null;
      },
      () => undefined, // cancelled with the workflow
    );
  };

  // Every run reads the policy afresh: provisioning may have changed it since the last run.
  policyStale = false;
  const firstPolicy = await store.loadPresencePolicy({ clientId });
  const current: PresenceState = state ?? initialState(clientId, firstPolicy);
  if (state) enqueue(updatePolicy(current, firstPolicy, Date.now()));
  state = current;

  for (;;) {
    if (policyStale) {
      policyStale = false;
      enqueue(updatePolicy(current, await store.loadPresencePolicy({ clientId }), Date.now()));
    }
    // A connect that leaves the device online (a new session: its subscriptions are re-applied)
    // wakes the campaigns that came with it; a stale one wakes nothing (the next connect brings its own).
    if (inbox.length > 0) {
      const applied = applyEvents(current, inbox.splice(0), Date.now());
      if (applied.some((e) => e.type === 'applySubscriptions')) wakeWithSessionStart.push(...hinted);
      hinted.clear();
      enqueue(applied);
    }
    // Catching up after a long pause (worker down) may raise and escalate in one go.
    for (let round = 0; round < 10; round++) {
      const due = fireDueTimers(current, Date.now());
      if (due.length === 0) break;
      enqueue(due);
    }
    await carryOut();
    publishSearchAttributes(current);

    const idle = (): boolean => inbox.length === 0 && effects.length === 0 && !policyStale;
    // Ready to end or hand over: nothing queued, nothing running. New work wakes the loop instead,
    // so an update arriving now (which waits for its effects) is carried out, not deadlocked.
    const settled = (): boolean => idle() && background === 0 && allHandlersFinished();
    if (!current.policy.monitored && current.presence !== 'online' && !isOpen(current.alarm)) {
      // Deprovisioned and gone: nothing left to watch. A later event starts a new run.
      await condition(() => settled() || !idle());
      if (settled()) return;
      continue;
    }
    if (workflowInfo().continueAsNewSuggested || messages >= messageLimit) {
      await condition(() => settled() || !idle());
      if (settled()) {
        current.counters.runs++;
        return continueAsNew<typeof devicePresence>({ clientId, continueAsNewAfter: messageLimit, carried: current });
      }
      continue;
    }
    const deadline = nextDeadline(current);
    if (deadline !== null && deadline <= Date.now()) continue;
    if (deadline !== null) armTimer(deadline);
    const fired = timersFired;
    await condition(() => !idle() || timersFired !== fired);
  }
}
