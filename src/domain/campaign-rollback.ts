import type { CampaignSettings } from './schemas/campaign';

/**
 * Rollback on abort (docs/jobs.md, "Rollback on abort"), as Azure Device Update rolls back a
 * deployment (https://learn.microsoft.com/azure/iot-hub-device-update/device-update-configure-rollback):
 * when a campaign with a rollback message ends `aborted`, a second campaign, `<id>-rollback`, sends
 * that message to the targets whose execution had SUCCEEDED or was IN_PROGRESS. Pure and
 * workflow-safe: the campaign workflow builds the rollback's settings from its own.
 */

export const ROLLBACK_SUFFIX = '-rollback';

export function rollbackCampaignId(campaignId: string): string {
  return `${campaignId}${ROLLBACK_SUFFIX}`;
}

/**
 * The rollback campaign's settings: the parent's transport, target policy, reply timeout and batch
 * shape; at once (no ramp, no schedule), without abort criteria, retries or a rollback of its own.
 */
export function rollbackSettings(parent: CampaignSettings, startAttempt: string): CampaignSettings {
  const { exponentialRate: _ramp, ...rollout } = parent.rollout;
  return {
    campaignId: rollbackCampaignId(parent.campaignId),
    transport: parent.transport,
    rollout,
    policy: parent.policy,
    abort: [],
    startAttempt,
    ...(parent.deadlineMs !== undefined ? { deadlineMs: parent.deadlineMs } : {}),
    ...(parent.replies ? { replies: { timeoutMs: parent.replies.timeoutMs, pollMs: parent.replies.pollMs } } : {}),
    rollbackOf: parent.campaignId,
  };
}
