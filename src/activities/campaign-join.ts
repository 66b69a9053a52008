import { getClient, log } from '@temporalio/activity';
import type { History } from '../store';
import { CampaignStore } from '../store/campaigns';
import { tellContinuousCampaigns } from '../temporal/campaign-wake';

/**
 * After a device record is saved (provisioning, a fleet, a saga's undo): the open continuous
 * campaigns it now matches are told at once. Never fails the save: a campaign that misses the
 * signal finds the device by its periodic rescan of the records (docs/campaigns.md).
 */
export async function tellContinuousCampaignsOf(history: History, devices: readonly { clientId: string; tags: readonly string[]; status: string }[]): Promise<void> {
  try {
    await tellContinuousCampaigns(new CampaignStore(history.db), getClient(), devices);
  } catch (err) {
    log.warn('could not tell continuous campaigns of saved devices; their rescan will find them', { devices: devices.length, error: String(err) });
  }
}
