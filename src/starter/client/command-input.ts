import { z } from 'zod';
import { commandWorkflowId } from '../../domain/command';
import { ClientId, Identifier, Qos } from '../../domain/schemas/device';
import { deviceTopicProblem } from '../../domain/device-topics';
import { InputError, parseInput } from '../../domain/input-error';

/**
 * What a caller gives to send a command, checked at the boundary. Kept apart from commands.ts so
 * the CLI checks input without loading the Temporal client (it loads it only to connect).
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

/** `command/<clientId>/<commandId>` from either form; bad input names the field. */
export function commandWorkflowIdOf(id: string): string {
  const parts = id.replace(/^command\//, '').split('/');
  if (parts.length !== 2) throw new InputError([`id: "${id}" must be <clientId>/<commandId> or command/<clientId>/<commandId>`]);
  const [clientId, commandId] = parts as [string, string];
  return commandWorkflowId(parseInput(ClientId, clientId, 'id (client id)'), parseInput(Identifier, commandId, 'id (command id)'));
}
