import { activityInfo, Context, heartbeat, log } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { ClientId } from '../domain/schemas/device';
import { presenceWorkflowId, type PresenceEvent } from '../domain/presence';
import type { EmqxClient } from '../emqx';
import type { History } from '../store';
import { CampaignStore } from '../store/campaigns';
import { WaitingCampaigns } from '../store/waiting-campaigns';
import { PresenceDelivery } from '../temporal/presence-delivery';
import { presenceEventsSignal } from '../contracts/presence';
import type { ReconcileReport } from '../contracts/presence-reconcile';
import { emqxStep, mapPooled } from './failures';
import type { PresenceSettings } from './presence';

/**
 * Reconciliation (periodically, against the live clients list): a
 * webhook EMQX dropped leaves a device's recorded presence wrong; this compares EMQX's live clients
 * (paged) with the devices recorded online and tells each device workflow what EMQX shows. The
 * workflow decides, by its ordering rules, whether that changes anything, so a listing that races
 * with real events cannot undo them. A device found online also brings the campaigns waiting for
 * it, as a connect through the webhook adapter would: a dropped connect delays its message by one
 * reconciliation at most, not until the campaign's next recheck.
 */

const SIGNAL_CONCURRENCY = 16;

export function createReconcileActivities(deps: { emqx: EmqxClient; history?: History; presence?: PresenceSettings; temporalClient?: () => Client }) {
  const temporal = deps.temporalClient ?? (() => Context.current().client);
  const db = deps.history?.db;

  return {
    async reconcileWithLiveClients(): Promise<ReconcileReport> {
      const client = temporal();
      const taskQueue = activityInfo().taskQueue;
      // Taken before the listing: a session that began earlier and is not listed has ended.
      const observedAt = Date.now();

      const live = new Map<string, number>();
      await emqxStep(async () => {
        for await (const info of deps.emqx.iterateClients({}, { pageSize: 1_000 })) {
          // Only `connected: true` is live: offline sessions are listed with `false`, and a row EMQX could not
          // fully format may carry nothing but `clientid` (emqx_mgmt_api_clients.erl `format_channel_info/3`).
          // Ids the adapter refuses (see ClientId) have no device workflow to correct.
          if (info.connected !== true || !ClientId.safeParse(info.clientid).success) continue;
          const connectedAt = info.connected_at ? Date.parse(info.connected_at) : observedAt;
          live.set(info.clientid, Number.isNaN(connectedAt) ? observedAt : connectedAt);
        }
      });
      heartbeat({ phase: 'listed', live: live.size });

      const recordedOnline = new Set<string>();
      const query = `WorkflowType = 'devicePresence' AND ExecutionStatus = 'Running' AND TaskQueue = '${taskQueue}' AND Presence = 'online'`;
      for await (const execution of client.workflow.list({ query })) {
        if (execution.workflowId.startsWith('device/')) recordedOnline.add(execution.workflowId.slice('device/'.length));
      }

      const goneOffline = [...recordedOnline].filter((id) => !live.has(id));
      const cameOnline = [...live.entries()].filter(([id]) => !recordedOnline.has(id));
      let done = 0;
      const progress = (): void => {
        if (++done % 100 === 0) heartbeat({ phase: 'signalling', done });
      };

      await mapPooled(goneOffline, SIGNAL_CONCURRENCY, async (clientId) => {
        const event: PresenceEvent = { kind: 'observed', key: `reconcile|${observedAt}|offline|${clientId}`, online: false, observedAt };
        try {
          await client.workflow.getHandle(presenceWorkflowId(clientId)).signal(presenceEventsSignal, { events: [event] });
        } catch (err) {
          if (!(err instanceof WorkflowNotFoundError)) throw err;
        }
        progress();
      });
      // Only tracked clients get a device workflow (docs/presence.md): a provisioned device whose
      // first events were recorded only is started here once it is online.
      const delivery = deps.history
        ? new PresenceDelivery({
            temporal: client,
            taskQueue,
            history: deps.history,
            ...(deps.presence?.tracking ? { tracking: deps.presence.tracking } : {}),
            ...(deps.presence?.continueAsNewAfter ? { continueAsNewAfter: deps.presence.continueAsNewAfter } : {}),
          })
        : null;
      const tracked = delivery ? await delivery.tracked.among(cameOnline.map(([clientId]) => clientId)) : new Set<string>();
      const toStart = cameOnline.filter(([clientId]) => tracked.has(clientId));
      // The running campaigns that wait for offline devices, read once for this run.
      const waiting = db ? new WaitingCampaigns(new CampaignStore(db), Number.POSITIVE_INFINITY) : null;
      await mapPooled(toStart, SIGNAL_CONCURRENCY, async ([clientId, connectedAt]) => {
        const event: PresenceEvent = { kind: 'observed', key: `reconcile|${observedAt}|online|${clientId}`, online: true, observedAt, connectedAt };
        // Presence is corrected even when MongoDB cannot say which campaigns wait.
        const lookupFailed = (error: string): void => {
          log.warn('could not look up campaigns waiting for the device', { clientId, error });
        };
        const campaigns = waiting ? await waiting.forDeviceOrNone(clientId, lookupFailed) : [];
        await delivery?.deliver(clientId, [event], campaigns);
        progress();
      });

      return {
        live: live.size,
        recordedOnline: recordedOnline.size,
        markedOffline: goneOffline.length,
        markedOnline: toStart.length,
        untracked: cameOnline.length - toStart.length,
        observedAt: new Date(observedAt).toISOString(),
      };
    },
  };
}
