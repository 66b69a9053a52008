import { ApplicationFailure, log } from '@temporalio/activity';
import { request } from 'undici';
import type { Alarm, AlarmChange, PresencePolicy } from '../domain/presence';
import { EmqxNotFoundError, type EmqxClient } from '../emqx';
import type { History } from '../store';
import { CampaignStore } from '../store/campaigns';
import { WaitingCampaigns } from '../store/waiting-campaigns';
import type { PresenceTracking } from '../temporal/presence-delivery';
import { asActivityFailure } from './failures';

/**
 * The device workflow's steps: its alarm policy, re-applying desired subscriptions on connect,
 * recording alarms and POSTing them to the alarm webhook. Each is idempotent.
 */

export interface PresenceSettings {
  /** The policy of a device provisioned without one (ALARM_* variables). */
  defaults: Omit<PresencePolicy, 'monitored' | 'desiredSubscriptions'>;
  /** ALARM_WEBHOOK_URL: where each alarm change is POSTed; unset means record only. */
  alarmWebhookUrl?: string;
  /** PRESENCE_CONTINUE_AS_NEW_AFTER, for device workflows that reconciliation starts. */
  continueAsNewAfter?: number;
  /** PRESENCE_UNKNOWN_CLIENTS, PRESENCE_TRACK_PATTERN: which clients reconciliation starts a device workflow for. */
  tracking?: PresenceTracking;
}

export const DEFAULT_PRESENCE_SETTINGS: PresenceSettings = {
  defaults: { graceMs: 120_000, escalationMs: [900_000, 3_600_000], flapThreshold: 5, flapWindowMs: 600_000 },
};

/** The body POSTed to ALARM_WEBHOOK_URL; `Idempotency-Key` names the change, so a retried POST can be recognised. */
export interface AlarmNotification {
  alarmId: string;
  clientId: string;
  kind: Alarm['kind'];
  level: number;
  state: Alarm['state'];
  change: AlarmChange['change'];
  raisedAt: string;
  at: string;
  offlineSince?: string;
  clearedBy?: Alarm['clearedBy'];
  note?: string;
}

const WEBHOOK_TIMEOUT_MS = 10_000;

export function createPresenceActivities(deps: { emqx: EmqxClient; history: History; presence?: PresenceSettings }) {
  const { emqx, history } = deps;
  const settings = deps.presence ?? DEFAULT_PRESENCE_SETTINGS;
  // Every lookup here asks for a fresh list (concurrent lookups share one read), so no cache age applies.
  const waiting = new WaitingCampaigns(new CampaignStore(history.db), 0);

  const activities = {
    /** The device's own policy (set at provisioning) or the default; a deprovisioned device is not monitored. */
    async loadPresencePolicy(input: { clientId: string }): Promise<PresencePolicy> {
      const record = await history.getDevice(input.clientId);
      return {
        ...settings.defaults,
        ...(record?.alarmPolicy ?? {}),
        monitored: record?.status !== 'deprovisioned',
        desiredSubscriptions: record?.status === 'active' ? record.subscriptions.length : 0,
        notifies: settings.alarmWebhookUrl !== undefined,
      };
    },

    /**
     * A clean session starts without the desired proxy subscriptions, so the device workflow
     * re-applies them on every connect. Reads the record now, so a change made while the device was
     * offline is what gets applied. A device that left again keeps them if its session is
     * persistent (EMQX subscribes an offline session too, emqx_mgmt.erl `do_subscribe/2`), and
     * `online` is then true: what a woken campaign publishes is queued in that session.
     */
    async reapplyDesiredSubscriptions(input: { clientId: string; connectedAt: number }): Promise<{ online: boolean; applied: number }> {
      const record = await history.getDevice(input.clientId);
      if (record?.status !== 'active' || record.subscriptions.length === 0) return { online: true, applied: 0 };
      try {
        const result = await emqx.subscribeBulk(input.clientId, record.subscriptions.map((s) => ({ topic: s.topic, qos: s.qos })));
        // EMQX grants proxy subscriptions without an ACL check; what fails here is a malformed
        // request (a bad `$share` filter), which retrying will not change.
        const rejected = result.failed.filter((f) => !f.clientGone);
        if (rejected.length > 0) {
          const reasons = rejected.map((f) => `${f.topic}: ${f.reason}`).join('; ');
          throw ApplicationFailure.nonRetryable(`EMQX rejected subscriptions for ${input.clientId}: ${reasons}`, 'SubscriptionRejected');
        }
        // Gone again during the call: the next connect re-applies.
        if (result.clientGone) return { online: false, applied: result.succeeded.length };
        return { online: true, applied: result.succeeded.length };
      } catch (err) {
        // Gone again before we got there: the next connect re-applies.
        if (err instanceof EmqxNotFoundError) return { online: false, applied: 0 };
        throw asActivityFailure(err);
      }
    },

    async recordAlarm(input: { alarm: Alarm }): Promise<void> {
      await history.alarms.save(input.alarm);
    },

    async notifyAlarm(input: { alarm: Alarm; change: AlarmChange['change'] }): Promise<{ sent: boolean }> {
      const url = settings.alarmWebhookUrl;
      if (!url) return { sent: false };
      const { alarm } = input;
      const body: AlarmNotification = {
        alarmId: alarm.alarmId,
        clientId: alarm.clientId,
        kind: alarm.kind,
        level: alarm.level,
        state: alarm.state,
        change: input.change,
        raisedAt: alarm.raisedAt,
        at: alarm.updatedAt,
        ...(alarm.offlineSince ? { offlineSince: alarm.offlineSince } : {}),
        ...(alarm.clearedBy ? { clearedBy: alarm.clearedBy } : {}),
        ...(alarm.note ? { note: alarm.note } : {}),
      };
      let status: number;
      try {
        const response = await request(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': `${alarm.alarmId}|${alarm.changes.length}` },
          body: JSON.stringify(body),
          headersTimeout: WEBHOOK_TIMEOUT_MS,
          bodyTimeout: WEBHOOK_TIMEOUT_MS,
        });
        status = response.statusCode;
        await response.body.dump();
      } catch (err) {
        // The URL may carry credentials: name the host only.
        throw ApplicationFailure.retryable(`alarm webhook ${new URL(url).host} unreachable: ${(err as Error).message}`, 'AlarmWebhookUnavailable');
      }
      if (status >= 200 && status < 300) return { sent: true };
      const retryable = status === 408 || status === 429 || status >= 500;
      const message = `alarm webhook ${new URL(url).host} answered ${status}`;
      throw retryable ? ApplicationFailure.retryable(message, 'AlarmWebhookUnavailable') : ApplicationFailure.nonRetryable(message, 'AlarmWebhookRejected');
    },
  };

  return {
    ...activities,

    /**
     * Re-applies the desired subscriptions, then lists the campaigns waiting for the device, read
     * only now: a campaign that found no subscriber while the subscriptions were being re-applied
     * (after the connect's own lookup) is found here, and every campaign the device workflow wakes
     * with this answer finds the subscriptions live.
     */
    async reapplySubscriptionsAndFindCampaigns(input: { clientId: string; connectedAt: number }): Promise<{ online: boolean; applied: number; campaigns: string[] }> {
      const result = await activities.reapplyDesiredSubscriptions(input);
      if (!result.online) return { ...result, campaigns: [] };
      // A fresh list of running campaigns: one started since the cached read may already wait for the device.
      const campaigns = await waiting.forDeviceOrNone(
        input.clientId,
        (error) => {
          log.warn('could not look up campaigns waiting for the device', { clientId: input.clientId, error });
        },
        { fresh: true },
      );
      return { ...result, campaigns };
    },
  };
}
