import { describe, expect, it } from 'vitest';
import { validateCampaignRequest } from '../../src/starter/client/campaigns';

/** A campaign with replies is a job named by the campaign id (docs/jobs.md). */
describe('campaign requests with expectReply', () => {
  it('fills ${jobid} in the topic and payload with the campaign id and carries it as the jobId user property', () => {
    const { request } = validateCampaignRequest({
      campaignId: 'fw-21',
      targets: { list: [{ clientId: 'dev-1' }] },
      message: { topic: 'devices/${clientid}/jobs/${jobid}', payload: { format: 'json', text: '{"job":"${jobid}"}' }, properties: { userProperties: { site: 'a' } } },
      expectReply: {},
    });
    expect(request.message).toMatchObject({
      topic: 'devices/${clientid}/jobs/fw-21',
      payload: { format: 'json', text: '{"job":"fw-21"}' },
      properties: { userProperties: { site: 'a', jobId: 'fw-21' } },
    });
    expect(request.expectReply).toEqual({ timeoutMs: 600_000 });
  });

  it('gives a campaign without an id one, so the job id is known before it starts', () => {
    const { request } = validateCampaignRequest({
      targets: { selector: { prefix: 'dev-' } },
      message: { topic: 'devices/${clientid}/jobs/${jobid}', payload: { format: 'text', text: 'go' } },
      expectReply: { timeoutMs: 30_000 },
    });
    expect(request.campaignId).toMatch(/^[A-Za-z0-9]/);
    expect(request.message.topic).toBe(`devices/\${clientid}/jobs/${request.campaignId}`);
  });

  it('refuses a reply timeout under a second, naming the field', () => {
    expect(() =>
      validateCampaignRequest({ targets: { list: [{ clientId: 'd' }] }, message: { topic: 't', payload: { format: 'text', text: 'p' } }, expectReply: { timeoutMs: 10 } }),
    ).toThrow(/expectReply\.timeoutMs/);
  });
});
