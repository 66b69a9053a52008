import { describe, expect, it } from 'vitest';
import { classifyReply, MAX_REPLY_PAYLOAD_BYTES, type PublishedReply } from '../../src/domain/schemas/device-reply';
import { DEFAULT_DEVICE_TOPICS, deviceTopicFilter, deviceTopicProblem, deviceTopicsProblems, jobAclRules, matchDeviceTopic, renderDeviceTopic, replyTopicFilters } from '../../src/domain/device-topics';

/** Topic templates (src/domain/device-topics.ts) and reply checks (src/domain/device-reply.ts). */

const message = (topic: string, payload: unknown, publisher = 'dev-1'): PublishedReply => ({
  messageId: 'm1',
  publisher,
  topic,
  payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
  at: 1_700_000_000_000,
});

describe('device topic templates', () => {
  it('render, match and filter by whole levels', () => {
    expect(renderDeviceTopic(DEFAULT_DEVICE_TOPICS.jobStatus, { clientid: 'dev-1', jobid: 'fw-7' })).toBe('devices/dev-1/jobs/fw-7/status');
    expect(matchDeviceTopic(DEFAULT_DEVICE_TOPICS.jobStatus, 'devices/dev-1/jobs/fw-7/status')).toEqual({ clientid: 'dev-1', jobid: 'fw-7' });
    expect(matchDeviceTopic(DEFAULT_DEVICE_TOPICS.jobStatus, 'devices/dev-1/jobs/fw-7')).toBeNull();
    expect(matchDeviceTopic(DEFAULT_DEVICE_TOPICS.jobStatus, 'devices//jobs/fw-7/status')).toBeNull();
    expect(deviceTopicFilter(DEFAULT_DEVICE_TOPICS.commandReply, { clientid: 'dev-1' })).toBe('devices/dev-1/commands/+/reply');
    expect(replyTopicFilters(DEFAULT_DEVICE_TOPICS)).toEqual(['devices/+/jobs/+/status', 'devices/+/commands/+/reply']);
  });

  it('give a device its own topics only', () => {
    expect(jobAclRules('dev-1', DEFAULT_DEVICE_TOPICS)).toEqual([
      { permission: 'allow', action: 'subscribe', topic: 'devices/dev-1/jobs/+' },
      { permission: 'allow', action: 'subscribe', topic: 'devices/dev-1/commands/+' },
      { permission: 'allow', action: 'publish', topic: 'devices/dev-1/jobs/+/status' },
      { permission: 'allow', action: 'publish', topic: 'devices/dev-1/commands/+/reply' },
    ]);
  });

  it('refuse templates a device could not be told apart in, naming the reason', () => {
    expect(deviceTopicsProblems(DEFAULT_DEVICE_TOPICS)).toEqual([]);
    expect(deviceTopicProblem('jobStatus', 'jobs/${jobid}/status')).toBe('must hold ${clientid} exactly once as a whole level');
    expect(deviceTopicProblem('command', 'd/${clientid}/cmd-${commandid}')).toBe('placeholder "cmd-${commandid}" must fill a whole topic level');
    expect(deviceTopicProblem('command', 'd/${clientid}/${jobid}/${commandid}')).toBe('unknown placeholder ${jobid} (use ${clientid} and ${commandid})');
    expect(deviceTopicProblem('job', 'd/+/${clientid}/${jobid}')).toBe('must not contain wildcards ("+" or "#")');
  });
});

describe('device replies', () => {
  it('a job status with progress and details is accepted, details kept as JSON text', () => {
    expect(classifyReply(message('devices/dev-1/jobs/fw-7/status', { status: 'IN_PROGRESS', progress: 40, details: { step: 'download' } }), DEFAULT_DEVICE_TOPICS)).toEqual({
      kind: 'job',
      jobId: 'fw-7',
      clientId: 'dev-1',
      publisher: 'dev-1',
      messageId: 'm1',
      topic: 'devices/dev-1/jobs/fw-7/status',
      at: 1_700_000_000_000,
      accepted: true,
      status: 'IN_PROGRESS',
      progress: 40,
      details: '{"step":"download"}',
    });
  });

  it('a command reply is accepted with its result', () => {
    expect(classifyReply(message('devices/dev-1/commands/c1/reply', { status: 'REJECTED', result: [1, 2] }), DEFAULT_DEVICE_TOPICS)).toMatchObject({ kind: 'command', commandId: 'c1', accepted: true, status: 'REJECTED', result: '[1,2]' });
  });

  it.each([
    ['not JSON', 'done', 'payload: is not JSON'],
    ['an unknown status', { status: 'DONE' }, 'payload.status: must be one of IN_PROGRESS, SUCCEEDED, FAILED, REJECTED'],
    ['progress over 100', { status: 'IN_PROGRESS', progress: 101 }, 'payload.progress: must be 0-100'],
    ['details that are not an object', { status: 'FAILED', details: 'broke' }, 'payload.details: must be a JSON object'],
    ['an unknown field', { status: 'FAILED', reason: 'x' }, 'payload: Unrecognized key: "reason"'],
    ['a missing status', { progress: 3 }, 'payload.status: is required'],
  ])('a job status with %s is refused with the reason and what was sent', (_what, payload, problem) => {
    const sent = typeof payload === 'string' ? payload : JSON.stringify(payload);
    expect(classifyReply(message('devices/dev-1/jobs/fw-7/status', payload), DEFAULT_DEVICE_TOPICS)).toMatchObject({ accepted: false, problem, payload: sent });
  });

  it('a payload over the size limit is refused', () => {
    const reply = classifyReply(message('devices/dev-1/jobs/j/status', { status: 'FAILED', details: { log: 'x'.repeat(MAX_REPLY_PAYLOAD_BYTES) } }), DEFAULT_DEVICE_TOPICS);
    expect(reply).toMatchObject({ accepted: false, problem: expect.stringMatching(/^payload: must be at most 16384 bytes/) });
    expect(reply?.accepted === false && reply.payload.length).toBe(1_024);
  });

  it('a reply published by another client than the topic names is refused', () => {
    expect(classifyReply(message('devices/dev-1/commands/c1/reply', { status: 'SUCCEEDED' }, 'dev-2'), DEFAULT_DEVICE_TOPICS)).toMatchObject({
      accepted: false,
      clientId: 'dev-1',
      publisher: 'dev-2',
      problem: 'published by client "dev-2", not by the device the topic names ("dev-1")',
    });
  });

  it('other topics are not replies', () => {
    expect(classifyReply(message('devices/dev-1/telemetry', {}), DEFAULT_DEVICE_TOPICS)).toBeNull();
    expect(classifyReply(message('devices/dev-1/jobs/fw-7', {}), DEFAULT_DEVICE_TOPICS)).toBeNull();
  });
});
