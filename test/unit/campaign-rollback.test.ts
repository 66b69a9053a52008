import { describe, expect, it } from 'vitest';
import { CampaignRequest, type CampaignSettings } from '../../src/domain/schemas/campaign';
import { rollbackCampaignId, rollbackSettings } from '../../src/domain/campaign-rollback';
import { validateCampaignRequest } from '../../src/starter/client/campaigns';

/** Rollback on abort (docs/jobs.md): the rollback campaign's id and settings, and the request checks. */

const message = { topic: 'devices/${clientid}/jobs/${jobid}', payload: { format: 'json' as const, text: '{"job":"${jobid}","to":"2.0"}' } };

describe('rollback campaigns', () => {
  it('take the parent\'s transport, policy, batch shape and reply timeout, without ramp, abort criteria, retries or a rollback of their own', () => {
    const request = CampaignRequest.parse({
      campaignId: 'fw-3',
      targets: { list: [{ clientId: 'd1' }] },
      message,
      rollout: { batchSize: 50, concurrency: 2, maximumPerMinute: 600, exponentialRate: { baseRatePerMinute: 60, incrementFactor: 2, numberOfSucceededTargets: 10 } },
      abort: [{ failureType: 'failed', minExecuted: 3, thresholdPercent: 50 }],
      expectReply: { timeoutMs: 120_000, retry: { failed: { retries: 2, backoffMs: 1_000 } } },
    });
    const parent: CampaignSettings = {
      campaignId: 'fw-3',
      transport: 'mqtt',
      rollout: request.rollout,
      policy: { retry: request.retry, offline: request.offline },
      abort: request.abort,
      deadlineMs: 3_600_000,
      schedule: { windows: ['0 1 * * * 3h'] },
      replies: { timeoutMs: 120_000, pollMs: 5_000, retry: { failed: { retries: 2, backoffMs: 1_000, backoffCoefficient: 2, maximumBackoffMs: 300_000 } } },
      rollback: true,
      startAttempt: 'abc',
    };
    expect(rollbackSettings(parent, 'rollback-of-abc')).toEqual({
      campaignId: 'fw-3-rollback',
      transport: 'mqtt',
      rollout: { batchSize: 50, concurrency: 2, maximumPerMinute: 600 },
      policy: parent.policy,
      abort: [],
      startAttempt: 'rollback-of-abc',
      deadlineMs: 3_600_000,
      replies: { timeoutMs: 120_000, pollMs: 5_000 },
      rollbackOf: 'fw-3',
    });
  });

  it('fill ${jobid} of the rollback message with the rollback campaign\'s id, and refuse what cannot work', () => {
    const { request } = validateCampaignRequest({ campaignId: 'fw-3', targets: { list: [{ clientId: 'd1' }] }, message, expectReply: {}, rollback: { message } });
    expect(rollbackCampaignId('fw-3')).toBe('fw-3-rollback');
    expect(request.rollback?.message).toMatchObject({
      topic: 'devices/${clientid}/jobs/fw-3-rollback',
      payload: { text: '{"job":"fw-3-rollback","to":"2.0"}' },
      properties: { userProperties: { jobId: 'fw-3-rollback' } },
    });
    const start = (extra: Record<string, unknown>) => () => validateCampaignRequest({ targets: { list: [{ clientId: 'd1' }] }, message, expectReply: {}, rollback: { message }, ...extra });
    expect(start({ campaignId: 'x'.repeat(56) })).toThrow(/campaignId: must be at most 55 characters with a rollback/);
    expect(start({ expectReply: undefined })).toThrow(/rollback: needs expectReply/);
    expect(start({ rollback: { message: { ...message, topic: 'a/${clientid}/${fw}' } } })).toThrow(/rollback\.message: a rollback's targets have no per-target values, but the template uses \$\{fw\}/);
  });
});
