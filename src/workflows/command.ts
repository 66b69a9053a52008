import { condition, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  commandDeviceConnectedSignal,
  commandReplySignal,
  commandStatusQuery,
  type CommandReplyMessage,
  type CommandRequest,
  type CommandView,
} from '../contracts/command';

/**
 * One command to one device, answered by the device (docs/jobs.md), like ThingsBoard's persistent
 * RPC: published as soon as the device can take it (now, or when it connects: the webhook adapter
 * signals `commandDeviceConnected`, and rechecks with a growing interval cover a lost signal),
 * then the device's reply, relayed by the adapter, ends it. Without a reply by the deadline it
 * ends TIMED_OUT. The history stays small: a handful of activities and one or two signals.
 */

const steps = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '10 seconds' },
});

const DEFAULT_RECHECK_MS = 2_000;
const DEFAULT_MAX_RECHECK_MS = 60_000;

export async function deviceCommand(request: CommandRequest): Promise<CommandView> {
  const started = Date.now();
  const deadline = started + request.timeoutMs;
  const view: CommandView = {
    clientId: request.clientId,
    commandId: request.commandId,
    state: 'WAITING_FOR_DEVICE',
    startedAt: new Date(started).toISOString(),
    deadlineAt: new Date(deadline).toISOString(),
    attempts: 0,
  };
  let reply: CommandReplyMessage | undefined;
  let connected = false;
  setHandler(commandReplySignal, (message) => {
    reply ??= message;
  });
  setHandler(commandDeviceConnectedSignal, () => {
    connected = true;
  });
  setHandler(commandStatusQuery, () => view);

  const remaining = (): number => deadline - Date.now();
  const firstRecheck = request.recheckMs ?? DEFAULT_RECHECK_MS;
  let recheck = firstRecheck;
  let registered = false;
  while (view.state === 'WAITING_FOR_DEVICE' && reply === undefined && remaining() > 0) {
    view.attempts++;
    // Cleared before publishing: a connect during the publish or the bookkeeping below means "try again now".
    connected = false;
    const outcome = await steps.publishCommand(request);
    if (outcome.kind === 'delivered') {
      view.state = 'DELIVERED';
      view.deliveredAt = new Date(Date.now()).toISOString();
    } else if (outcome.kind === 'rejected') {
      view.state = 'UNDELIVERABLE';
      view.error = outcome.error;
    } else {
      if (!registered) {
        await steps.setCommandWaiting({ clientId: request.clientId, commandId: request.commandId, waiting: true });
        registered = true;
      }
      await condition(() => connected || reply !== undefined, Math.max(1, Math.min(recheck, remaining())));
      // After a connect the device may not have subscribed yet: look again soon.
      recheck = connected ? firstRecheck : Math.min(recheck * 2, request.maxRecheckMs ?? DEFAULT_MAX_RECHECK_MS);
    }
  }
  if (registered) await steps.setCommandWaiting({ clientId: request.clientId, commandId: request.commandId, waiting: false });

  if (view.state !== 'UNDELIVERABLE') {
    if (reply === undefined && remaining() > 0) await condition(() => reply !== undefined, remaining());
    // A reply whose signal was lost is in the store.
    reply ??= (await steps.readCommandReply({ clientId: request.clientId, commandId: request.commandId })) ?? undefined;
    if (reply) {
      view.state = reply.status;
      view.reply = reply;
      view.answeredAt = new Date(reply.at).toISOString();
    } else {
      view.state = 'TIMED_OUT';
    }
  }
  return view;
}
