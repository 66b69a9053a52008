import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { campaignWorkflowId, deviceOnlineSignal } from '../contracts/campaign';
import type { CampaignStore } from '../store/campaigns';

/**
 * Waking campaigns that wait for a device (their `deviceOnline` signal), from outside workflow
 * code: the webhook adapter for untracked clients, the campaign activities, the client library.
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
