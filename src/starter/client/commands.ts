import { randomBytes } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, type Client, type WorkflowHandle } from '@temporalio/client';
import { commandStatusQuery, commandWorkflowId, type CommandRequest, type CommandView } from '../../contracts/command';
import { renderDeviceTopic, type DeviceTopics } from '../../domain/device-topics';
import { InputError, parseInput } from '../../domain/input-error';
import { CommandInput, commandWorkflowIdOf } from './command-input';
import { DeviceIdKey, DeviceOperationKey } from '../../domain/search-attributes';
import type { deviceCommand } from '../../workflows/command';

export { CommandInput, commandWorkflowIdOf } from './command-input';

/**
 * Commands in the client library (`ops.commands`, docs/jobs.md): send one to a device and get the
 * device's reply, durably (the workflow `command/<clientId>/<commandId>` waits for the device to
 * connect, up to the timeout), and read a command's state.
 */

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
