import { EmqxBadRequestError, type EmqxClient } from '../emqx';
import type { CommandReplyMessage, CommandRequest } from '../contracts/command';
import { commandWorkflowId } from '../contracts/command';
import type { History } from '../store';
import { DeviceReplyStore } from '../store/job-replies';
import { WaitingCommands } from '../store/waiting-commands';
import { asActivityFailure } from './failures';

/** Steps of the command workflow (src/workflows/command.ts). */

export interface CommandActivityDeps {
  emqx: EmqxClient;
  history: History;
}

export type CommandPublishOutcome = { kind: 'delivered' } | { kind: 'no_subscriber' } | { kind: 'rejected'; error: string };

export function createCommandActivities(deps: CommandActivityDeps) {
  // Created on first use: unit tests of other activities build the whole set with a fake History.
  let replies: DeviceReplyStore | undefined;
  let waiting: WaitingCommands | undefined;
  const repliesOf = (): DeviceReplyStore => (replies ??= new DeviceReplyStore(deps.history.db));
  const waitingOf = (): WaitingCommands => (waiting ??= new WaitingCommands(deps.history.db));

  return {
    /**
     * Publishes the command once through EMQX's /publish. `no_subscriber` (nobody, not even an
     * offline persistent session, has the topic) means the device cannot have it: try again when
     * it connects. The MQTT 5 response topic and correlation data carry where to answer; MQTT
     * 3.1.1 devices find it by the topic convention (docs/jobs.md).
     */
    async publishCommand(request: CommandRequest): Promise<CommandPublishOutcome> {
      try {
        const outcome = await deps.emqx.publish({
          topic: request.topic,
          payload: request.payload,
          qos: request.qos,
          properties: { response_topic: request.replyTopic, correlation_data: request.commandId },
        });
        if (outcome.status === 'delivered') return { kind: 'delivered' };
        if (outcome.status === 'no_subscriber') return { kind: 'no_subscriber' };
        // 131: subscribers matched but dispatch failed (a node restarting): worth another try later.
        if (outcome.reasonCode === 131) return { kind: 'no_subscriber' };
        return { kind: 'rejected', error: `EMQX rejected the command: reason code ${outcome.reasonCode} ${outcome.message}` };
      } catch (err) {
        if (err instanceof EmqxBadRequestError) return { kind: 'rejected', error: err.message };
        throw asActivityFailure(err);
      }
    },

    async setCommandWaiting(input: { clientId: string; commandId: string; waiting: boolean }): Promise<void> {
      const workflowId = commandWorkflowId(input.clientId, input.commandId);
      if (input.waiting) await waitingOf().add(input.clientId, workflowId);
      else await waitingOf().remove(input.clientId, workflowId);
    },

    async readCommandReply(input: { clientId: string; commandId: string }): Promise<CommandReplyMessage | null> {
      const reply = await repliesOf().commandReply(input.clientId, input.commandId);
      if (!reply) return null;
      return { status: reply.status, ...(reply.result !== undefined ? { result: reply.result } : {}), messageId: reply.messageId, at: reply.at };
    },
  };
}
