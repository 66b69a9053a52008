import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { CommandReplyStatus } from '../domain/schemas/device-reply';

/**
 * The command workflow's contract with its callers (the client library, the CLI, the webhook
 * adapter that relays replies and wakes commands on connect): messages, id, request and outcome.
 * Workflow-safe: no zod, no Node built-ins.
 */

export { commandWorkflowId } from '../domain/command';

export interface CommandRequest {
  clientId: string;
  commandId: string;
  /** The rendered topic the command is published on. */
  topic: string;
  payload: string;
  qos: 0 | 1 | 2;
  /** The device must answer within this, counted from the start (offline time included). */
  timeoutMs: number;
  /** The reply topic, also sent as the MQTT 5 response topic. */
  replyTopic: string;
  /** First recheck while the device is offline; doubles up to `maxRecheckMs`. */
  recheckMs?: number;
  maxRecheckMs?: number;
}

export type CommandState =
  /** Not yet published: the device is offline or not subscribed. */
  | 'WAITING_FOR_DEVICE'
  /** EMQX took it for the device; no answer yet. */
  | 'DELIVERED'
  | CommandReplyStatus
  | 'TIMED_OUT'
  /** EMQX refused the message (e.g. the topic is not allowed); it can never be delivered. */
  | 'UNDELIVERABLE';

export interface CommandReplyMessage {
  status: CommandReplyStatus;
  /** The device's result as JSON text. */
  result?: string;
  messageId: string;
  /** EMQX's receive time (epoch ms). */
  at: number;
}

export interface CommandView {
  clientId: string;
  commandId: string;
  state: CommandState;
  startedAt: string;
  deadlineAt: string;
  deliveredAt?: string;
  answeredAt?: string;
  /** Publish attempts (each publishes at most once to the device). */
  attempts: number;
  reply?: CommandReplyMessage;
  /** Why it is UNDELIVERABLE. */
  error?: string;
}

export const commandReplySignal = defineSignal<[CommandReplyMessage]>('commandReply');
/** The device has connected: publish now instead of at the next recheck. */
export const commandDeviceConnectedSignal = defineSignal('commandDeviceConnected');
export const commandStatusQuery = defineQuery<CommandView>('commandStatus');
