import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { campaignWorkflowId, deviceOnlineSignal, devicesJoinedSignal } from '../contracts/campaign';
import { matchesSelector } from '../domain/campaign-selector';
import type { CampaignStore } from '../store/campaigns';

/**
 * Waking campaigns that wait for a device (their `deviceOnline` signal), from outside workflow
 * code: the webhook adapter for untracked clients, the campaign activities, the client library;
 * and telling open continuous campaigns of devices that now match them (`devicesJoined`).
 */

/** The workflow has ended or never existed: a signal or query to it is refused. */
export function workflowClosed(err: unknown): boolean {
  return err instanceof WorkflowNotFoundError || (err instanceof Error && /already completed|not found|closed/i.test(err.message));
}

/**
 * Signals `deviceOnline` to every running campaign that waits for this device; returns those it
 * reached (a campaign that ended meanwhile is skipped). Cheap when the device is not awaited.
 */
export async function wakeCampaignsWaitingFor(store: CampaignStore, temporal: Client, clientId: string): Promise<string[]> {
  return wakeCampaigns(temporal, await store.campaignsAwaiting(clientId), clientId);
}

/** Signals `deviceOnline` to these campaigns; returns those it reached (one that ended is skipped). */
export async function wakeCampaigns(temporal: Client, campaignIds: readonly string[], clientId: string): Promise<string[]> {
  const signalled: string[] = [];
  for (const campaignId of campaignIds) {
    try {
      await temporal.workflow.getHandle(campaignWorkflowId(campaignId)).signal(deviceOnlineSignal, clientId);
      signalled.push(campaignId);
    } catch (err) {
      if (!workflowClosed(err)) throw err;
    }
  }
  return signalled;
}

/** Client ids per `devicesJoined` signal (a fleet provisions thousands at once). */
const JOINED_PER_SIGNAL = 500;

/**
 * Signals `devicesJoined` to every open continuous campaign whose selector these device records
 * (just saved) match; returns the campaigns told. A campaign that ended meanwhile is skipped; a
 * lost signal is made up for by the campaign's own rescan.
 */
export async function tellContinuousCampaigns(
  store: CampaignStore,
  temporal: Client,
  devices: readonly { clientId: string; tags: readonly string[]; status: string }[],
): Promise<string[]> {
  if (!devices.some((d) => d.status === 'active')) return [];
  const told: string[] = [];
  for (const { campaignId, selector } of await store.openContinuousCampaigns()) {
    const ids = devices.filter((d) => matchesSelector(selector, d)).map((d) => d.clientId);
    try {
      for (let from = 0; from < ids.length; from += JOINED_PER_SIGNAL) {
        await temporal.workflow.getHandle(campaignWorkflowId(campaignId)).signal(devicesJoinedSignal, ids.slice(from, from + JOINED_PER_SIGNAL));
      }
      if (ids.length > 0) told.push(campaignId);
    } catch (err) {
      if (!workflowClosed(err)) throw err;
    }
  }
  return told;
}
