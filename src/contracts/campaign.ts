import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { CampaignState } from '../domain/schemas/campaign';
import type { TargetCounts } from '../domain/campaign-core';

/**
 * The campaign workflow's contract with its clients (the CLI, the library, the presence workflow
 * that wakes waiting targets): message definitions, the workflow id and the progress shape.
 * Workflow-safe: no zod, no Node built-ins.
 */

export { campaignWorkflowId } from '../domain/campaign-core';

export interface CampaignProgress {
  campaignId: string;
  state: Exclude<CampaignState, 'created'>;
  reason?: string;
  counts: TargetCounts;
  /** Attempts beyond each target's first. */
  retries: number;
  transientErrors: number;
  /** Targets published to per minute, measured over the last minute. */
  ratePerMinute: number;
  /** The rollout's current limit (null = none). */
  rateLimitPerMinute: number | null;
  /** Time to finish the targets not waiting for a device, at the measured rate. */
  etaSeconds: number | null;
  batches: number;
  startedAt: string;
  deadlineAt?: string;
  pausedAt?: string;
  finishedAt?: string;
  /** Set by the client when it could not ask the workflow itself. */
  note?: string;
}

export type CampaignSummary = CampaignProgress & { state: 'completed' | 'cancelled' | 'aborted' };

export const campaignProgressQuery = defineQuery<CampaignProgress>('campaignProgress');
export const pauseCampaignUpdate = defineUpdate<CampaignProgress>('pauseCampaign');
export const resumeCampaignUpdate = defineUpdate<CampaignProgress>('resumeCampaign');
export const cancelCampaignUpdate = defineUpdate<CampaignProgress, [{ reason: string }]>('cancelCampaign');
export const deviceOnlineSignal = defineSignal<[string]>('deviceOnline');
