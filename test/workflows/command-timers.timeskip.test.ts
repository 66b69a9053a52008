import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandPublishOutcome } from '../../src/activities/command';
import type { CommandReplyMessage, CommandRequest } from '../../src/contracts/command';
import { deviceCommand } from '../../src/workflows/command';
import { uniqueName } from '../harness';
import { startTimeSkipping, type TimeSkippingEnv } from '../support/time-skipping';

/**
 * The command workflow's timers (src/workflows/command.ts) on the time-skipping test server:
 * rechecks while the device is offline, the deadline, the reply read from the store when its
 * signal was lost. The activities are fakes chosen per command id; the end-to-end runs with real
 * devices are in command.test.ts.
 */

const publishAs: Record<string, CommandPublishOutcome> = {};
const storedReplies: Record<string, CommandReplyMessage> = {};
let ts: TimeSkippingEnv;

beforeAll(async () => {
  ts = await startTimeSkipping({
    publishCommand: (request) => publishAs[request.commandId] ?? { kind: 'no_subscriber' },
    setCommandWaiting: () => undefined,
    readCommandReply: (input) => storedReplies[input.commandId] ?? null,
  });
});

afterAll(async () => {
  await ts?.close();
});

function request(commandId: string, timeoutMs: number): CommandRequest {
  return { clientId: 'dev-t', commandId, topic: `devices/dev-t/commands/${commandId}`, payload: 'x', qos: 1, timeoutMs, replyTopic: `devices/dev-t/commands/${commandId}/reply` };
}

const run = (commandId: string, timeoutMs: number) =>
  ts.env.client.workflow.execute(deviceCommand, { args: [request(commandId, timeoutMs)], workflowId: uniqueName(`command/dev-t/${commandId}`), taskQueue: ts.taskQueue });

describe('command timers', () => {
  it('an offline device is looked for again at 2 s, doubling to a minute, until the deadline: TIMED_OUT', async () => {
    const outcome = await run('never', 600_000);
    expect(outcome).toMatchObject({ state: 'TIMED_OUT', attempts: 14 });
    expect(outcome.deliveredAt).toBeUndefined();
    const attempts = ts.callsOf('publishCommand').filter((c) => c.input.commandId === 'never');
    const gaps = attempts.slice(1).map((c, i) => Math.round((c.at - (attempts[i] as { at: number }).at) / 1_000));
    expect(gaps).toEqual([2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60, 60, 60]);
    const waiting = ts.callsOf('setCommandWaiting').filter((c) => c.input.commandId === 'never');
    expect(waiting.map((c) => c.input.waiting)).toEqual([true, false]);
  });

  it('a delivered command whose reply signal was lost ends with the reply in the store, at the deadline', async () => {
    publishAs.lost = { kind: 'delivered' };
    storedReplies.lost = { status: 'FAILED', result: '"disk full"', messageId: 'm-lost', at: 1 };
    const outcome = await run('lost', 120_000);
    expect(outcome).toMatchObject({ state: 'FAILED', attempts: 1, reply: { messageId: 'm-lost' } });
    expect(ts.callsOf('setCommandWaiting').filter((c) => c.input.commandId === 'lost')).toEqual([]);
  });

  it('a command EMQX refuses ends UNDELIVERABLE at once, with the reason', async () => {
    publishAs.refused = { kind: 'rejected', error: 'EMQX rejected the command: reason code 135 not authorized' };
    const outcome = await run('refused', 600_000);
    expect(outcome).toMatchObject({ state: 'UNDELIVERABLE', attempts: 1, error: 'EMQX rejected the command: reason code 135 not authorized' });
    expect(ts.callsOf('readCommandReply').filter((c) => c.input.commandId === 'refused')).toEqual([]);
  });
});
