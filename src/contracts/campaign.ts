import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { CampaignProgress } from '../domain/campaign-scheduler';

/**
 * The campaign workflow's contract with its clients (the CLI, the library, the presence workflow
 * that wakes waiting targets): message definitions, the workflow id and the progress shape.
 * Workflow-safe: no zod, no Node built-ins.
 */

export { campaignWorkflowId } from '../domain/campaign';

export type { CampaignProgress, ReplyCounts } from '../domain/campaign-scheduler';

export type CampaignSummary = CampaignProgress & { state: 'completed' | 'cancelled' | 'aborted' };

export const campaignProgressQuery = defineQuery<CampaignProgress>('campaignProgress');
export const pauseCampaignUpdate = defineUpdate<CampaignProgress>('pauseCampaign');
export const resumeCampaignUpdate = defineUpdate<CampaignProgress>('resumeCampaign');
export const cancelCampaignUpdate = defineUpdate<CampaignProgress, [{ reason: string }]>('cancelCampaign');
export const deviceOnlineSignal = defineSignal<[string]>('deviceOnline');
/** Continuous campaigns: no device joins any more; the campaign completes once its targets are final. */
export const closeCampaignUpdate = defineUpdate<CampaignProgress>('closeCampaign');
/** Continuous campaigns: devices just provisioned or tagged that match the campaign's selector. */
export const devicesJoinedSignal = defineSignal<[string[]]>('devicesJoined');
