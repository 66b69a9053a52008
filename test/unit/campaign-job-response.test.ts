import { describe, expect, it } from 'vitest';
import { validateCampaignRequest } from '../../src/starter/client/campaigns';
import { renderMessage } from '../../src/domain/schemas/campaign-message';
import { DEFAULT_DEVICE_TOPICS } from '../../src/domain/device-topics';

/** A job's MQTT 5 response topic and correlation data (docs/jobs.md), rendered per target. */
describe('job messages: MQTT 5 response topic and correlation data', () => {
  const input = {
    campaignId: 'fw-22',
    targets: { list: [{ clientId: 'dev-1' }] },
    message: { topic: 'devices/${clientid}/jobs/${jobid}', payload: { format: 'text' as const, text: 'go' } },
    expectReply: {},
  };

  it('answers on the target\'s JOB_STATUS_TOPIC, with the job id as correlation data', () => {
    const { request } = validateCampaignRequest(input);
    expect(request.message.properties).toMatchObject({ responseTopic: 'devices/${clientid}/jobs/fw-22/status', correlationData: 'fw-22' });
    expect(renderMessage(request.message, { clientId: 'dev-1' })).toMatchObject({ responseTopic: 'devices/dev-1/jobs/fw-22/status', correlationData: 'fw-22' });
  });

  it('follows a configured status topic; a campaign without replies carries neither', () => {
    const { request } = validateCampaignRequest(input, { ...DEFAULT_DEVICE_TOPICS, jobStatus: 'jobs/${jobid}/${clientid}/state' });
    expect(renderMessage(request.message, { clientId: 'dev-2' }).responseTopic).toBe('jobs/fw-22/dev-2/state');
    const { expectReply: _, ...rest } = input;
    const plain = { ...rest, message: { ...rest.message, topic: 'fw/${clientid}' } };
    const rendered = renderMessage(validateCampaignRequest(plain).request.message, { clientId: 'dev-1' });
    expect(rendered.responseTopic).toBeUndefined();
    expect(rendered.correlationData).toBeUndefined();
  });
});
