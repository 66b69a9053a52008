import { randomBytes } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import { z } from 'zod';
import { commandDeviceConnectedSignal, commandStatusQuery, commandWorkflowId, type CommandRequest, type CommandView } from '../contracts/command';
import { ClientId, Identifier, Qos } from '../domain/device';
import { deviceTopicProblem, renderDeviceTopic, type DeviceTopics } from '../domain/device-topics';
import { InputError, parseInput } from '../domain/input-error';
import { DeviceIdKey, DeviceOperationKey } from '../domain/search-attributes';
import type { WaitingCommands } from '../history/waiting-commands';
import type { deviceCommand } from '../workflows/command';

/**
 * Commands in the client library (`ops.commands`, docs/jobs.md): send one to a device and get the
 * device's reply, durably (the workflow `command/<clientId>/<commandId>` waits for the device to
 * connect, up to the timeout), and read a command's state.
 */

/** Most a command payload may be: it travels through workflow history (encrypted) and EMQX. */
export const MAX_COMMAND_PAYLOAD_BYTES = 65_536;
const MAX_COMMAND_TIMEOUT_MS = 30 * 86_400_000;

export const CommandInput = z.object({
  clientId: ClientId,
  /** Default: generated (`cmd-<hex>`). */
  commandId: Identifier.optional(),
  /** Topic template with `${clientid}` and `${commandid}` (default COMMAND_TOPIC). */
  topic: z
    .string()
    .superRefine((v, ctx) => {
      const problem = deviceTopicProblem('command', v);
      if (problem) ctx.addIssue({ code: 'custom', message: `${problem} (the device reads the command id from the topic)` });
    })
    .optional(),
  payload: z.string().refine((v) => Buffer.byteLength(v, 'utf8') <= MAX_COMMAND_PAYLOAD_BYTES, `must be at most ${MAX_COMMAND_PAYLOAD_BYTES} bytes`),
  qos: Qos.default(1),
  timeoutMs: z.int('must be an integer (milliseconds)').min(1_000, 'must be at least 1s').max(MAX_COMMAND_TIMEOUT_MS, 'must be at most 30 days').default(30_000),
  /** First recheck interval while the device is offline (tests shorten it). */
  recheckMs: z.int().min(100).max(3_600_000).optional(),
});
export type CommandInput = z.input<typeof CommandInput>;

export interface SentCommand {
  clientId: string;
  commandId: string;
  workflowId: string;
  handle: WorkflowHandle<typeof deviceCommand>;
}

export interface CommandOpsDeps {
  temporal: Client;
  taskQueue: string;
  topics: DeviceTopics;
}

export class CommandNotFoundError extends Error {
  readonly type = 'CommandNotFoundError';
}

export class CommandOps {
  constructor(private readonly deps: CommandOpsDeps) {}

  /** Starts the command's workflow; the device gets it now or when it connects before the timeout. */
  async send(input: CommandInput): Promise<SentCommand> {
    const parsed = parseInput(CommandInput, input);
    const commandId = parsed.commandId ?? `cmd-${randomBytes(8).toString('hex')}`;
    const values = { clientid: parsed.clientId, commandid: commandId };
    const request: CommandRequest = {
      clientId: parsed.clientId,
      commandId,
      topic: renderDeviceTopic(parsed.topic ?? this.deps.topics.command, values),
      payload: parsed.payload,
      qos: parsed.qos,
      timeoutMs: parsed.timeoutMs,
      replyTopic: renderDeviceTopic(this.deps.topics.commandReply, values),
      ...(parsed.recheckMs !== undefined ? { recheckMs: parsed.recheckMs } : {}),
    };
    const workflowId = commandWorkflowId(parsed.clientId, commandId);
    try {
      const handle = await this.deps.temporal.workflow.start<typeof deviceCommand>('deviceCommand', {
        workflowId,
        taskQueue: this.deps.taskQueue,
        args: [request],
        workflowIdConflictPolicy: 'FAIL',
        // A command id names one command for good, ended or not.
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        typedSearchAttributes: [
          { key: DeviceIdKey, value: parsed.clientId },
          { key: DeviceOperationKey, value: 'command' },
        ],
        memo: { clientId: parsed.clientId, commandId, topic: request.topic },
      });
      return { clientId: parsed.clientId, commandId, workflowId, handle };
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) throw new InputError([`commandId: command ${commandId} already exists for ${parsed.clientId}; use another id`]);
      throw err;
    }
  }

  /** Sends and resolves with the outcome: the device's reply, TIMED_OUT or UNDELIVERABLE. */
  async sendAndWait(input: CommandInput): Promise<CommandView> {
    return (await this.send(input)).handle.result();
  }

  /** A command's state by `command/<clientId>/<commandId>` or `<clientId>/<commandId>`. */
  async status(id: string): Promise<CommandView & { running: boolean }> {
    const workflowId = commandWorkflowIdOf(id);
    const handle = this.deps.temporal.workflow.getHandle<typeof deviceCommand>(workflowId);
    try {
      const description = await handle.describe();
      if (description.status.name === 'RUNNING') return { ...(await handle.query(commandStatusQuery)), running: true };
      if (description.status.name === 'COMPLETED') return { ...(await handle.result()), running: false };
      throw new CommandNotFoundError(`command ${workflowId} ended ${description.status.name.toLowerCase()} without an outcome`);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new CommandNotFoundError(`no command ${workflowId}`);
      throw err;
    }
  }
}

/** `command/<clientId>/<commandId>` from either form; bad input names the field. */
export function commandWorkflowIdOf(id: string): string {
  const parts = id.replace(/^command\//, '').split('/');
  if (parts.length !== 2) throw new InputError([`id: "${id}" must be <clientId>/<commandId> or command/<clientId>/<commandId>`]);
  const [clientId, commandId] = parts as [string, string];
  return commandWorkflowId(parseInput(ClientId, clientId, 'id (client id)'), parseInput(Identifier, commandId, 'id (command id)'));
}

/**
 * Tells the commands waiting for a device that it has connected (called by the webhook adapter on
 * a connect). Never throws: a failure costs only the shortcut, the workflows' rechecks still come.
 */
export async function wakeCommands(temporal: Client, waiting: WaitingCommands, clientId: string, onError: (message: string) => void): Promise<void> {
  try {
    const workflowIds = await waiting.forDevice(clientId);
    await Promise.all(
      workflowIds.map((workflowId) =>
        temporal.workflow
          .getHandle(workflowId)
          .signal(commandDeviceConnectedSignal)
          .catch((err: unknown) => {
            if (!(err instanceof WorkflowNotFoundError)) throw err;
          }),
      ),
    );
  } catch (err) {
    onError(err instanceof Error ? err.message : String(err));
  }
}
