import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { CommandView } from '../../contracts/command';
import { InputError, parseInput } from '../../domain/input-error';
import { durationFlag, printResult, withOps, type CliIo } from './cli-io';
import { CommandInput, commandWorkflowIdOf } from '../client/command-input';

/**
 * `device-ops command send|status` (docs/jobs.md): a command the device answers. `send --wait`
 * exits 0 when the device answered SUCCEEDED and 1 for any other outcome.
 */

export class CommandNotSucceeded extends Error {}

function describe(view: CommandView & { running?: boolean }): string {
  const lines = [`command ${view.commandId} to ${view.clientId}: ${view.state}${view.running ? ' (running)' : ''}`];
  if (view.deliveredAt) lines.push(`delivered ${view.deliveredAt}`);
  if (view.answeredAt) lines.push(`answered ${view.answeredAt}`);
  if (view.reply?.result !== undefined) lines.push(`result: ${view.reply.result}`);
  if (view.error) lines.push(`error: ${view.error}`);
  if (view.running) lines.push(`deadline ${view.deadlineAt}`);
  return lines.join('\n');
}

/** The outcome for scripts: the device's result parsed back from JSON text. */
function asJson(view: CommandView & { running?: boolean }): Record<string, unknown> {
  const { reply, ...rest } = view;
  return { ...rest, workflowId: `command/${view.clientId}/${view.commandId}`, ...(reply ? { reply: { ...reply, ...(reply.result !== undefined ? { result: JSON.parse(reply.result) as unknown } : {}) } } : {}) };
}

function payloadOf(text: string): string {
  if (!text.startsWith('@')) return text;
  try {
    return readFileSync(text.slice(1), 'utf8');
  } catch (err) {
    throw new InputError([`--payload: cannot read ${text.slice(1)}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`]);
  }
}

function qosOf(text: string): 0 | 1 | 2 {
  if (!['0', '1', '2'].includes(text)) throw new InputError([`--qos: "${text}" must be 0, 1 or 2`]);
  return Number(text) as 0 | 1 | 2;
}

/** The library's field names, as the flags that set them. */
const FLAG_OF: Record<string, string> = { clientId: '<clientId>', commandId: '--id', topic: '--topic', payload: '--payload', timeoutMs: '--timeout', qos: '--qos' };

function checkFlags(input: CommandInput): void {
  try {
    parseInput(CommandInput, input);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    throw new InputError(err.problems.map((p) => p.replace(/^(\w+):/, (all, field: string) => (FLAG_OF[field] ? `${FLAG_OF[field]}:` : all))));
  }
}

export function registerCommandCommands(program: Command, io: CliIo): void {
  const command = program.command('command').description('commands a device answers (docs/jobs.md)');

  command
    .command('send')
    .description('send a command; delivered now or when the device connects before the timeout')
    .argument('<clientId>')
    .requiredOption('--payload <text>', 'the command payload, or @FILE')
    .option('--topic <template>', 'topic template with ${clientid} and ${commandid} (default COMMAND_TOPIC)')
    .option('--id <commandId>', 'the command id (default: generated)')
    .option('--qos <n>', 'MQTT QoS', '1')
    .option('--timeout <duration>', 'how long the device has to answer, offline time included', '30s')
    .option('--wait', 'wait for the reply (exit 1 unless the device answers SUCCEEDED)')
    .option('--json', 'print JSON')
    .action(async (clientId: string, opts: { payload: string; topic?: string; id?: string; qos: string; timeout: string; wait?: boolean; json?: boolean }) => {
      const input: CommandInput = {
        clientId,
        payload: payloadOf(opts.payload),
        qos: qosOf(opts.qos),
        timeoutMs: durationFlag(opts.timeout, '--timeout'),
        ...(opts.topic !== undefined ? { topic: opts.topic } : {}),
        ...(opts.id !== undefined ? { commandId: opts.id } : {}),
      };
      // Checked before connecting: bad input starts nothing.
      checkFlags(input);
      await withOps(io, async (ops) => {
        const sent = await ops.commands.send(input);
        if (!opts.wait) {
          const out = { clientId: sent.clientId, commandId: sent.commandId, workflowId: sent.workflowId, state: 'started' };
          printResult(io, opts.json, out, () => `started ${sent.workflowId}`);
          return;
        }
        const view = await sent.handle.result();
        printResult(io, opts.json, asJson(view), () => describe(view));
        if (view.state !== 'SUCCEEDED') throw new CommandNotSucceeded(`command ${view.commandId} ended ${view.state}`);
      });
    });

  command
    .command('status')
    .description('a command state: WAITING_FOR_DEVICE, DELIVERED, SUCCEEDED, FAILED, REJECTED, TIMED_OUT, UNDELIVERABLE')
    .argument('<id>', '<clientId>/<commandId> or command/<clientId>/<commandId>')
    .option('--json', 'print JSON')
    .action(async (id: string, opts: { json?: boolean }) => {
      commandWorkflowIdOf(id);
      const view = await withOps(io, (ops) => ops.commands.status(id));
      printResult(io, opts.json, asJson(view), () => describe(view));
    });
}
