import { readFileSync } from 'node:fs';
import type { WorkflowHandle } from '@temporalio/client';
import { Command, CommanderError, Option } from 'commander';
import { ConfigError } from '../../config';
import { failureMessage } from '../../domain/failures';
import { parseAclRule, parseSubscription, type AlarmPolicy } from '../../domain/schemas/device';
import { InputError } from '../../domain/input-error';
import type { DeviceOps } from '../client/index';
import { fleetFormatOf, parseFleetFile } from '../client/fleet-file';
import { registerCampaignCommands } from './campaign-cli';
import { registerCommandCommands } from './command-cli';
import { registerEmqxCommands } from './emqx-cli';
import { registerOpsCommands } from './ops-cli';
import { collect, durationFlag, printResult, STACK_HINT, withOps as withConnectedOps, type CliIo } from './cli-io';
import { registerPresenceCommands } from './presence-cli';

/**
 * The `device-ops` CLI. Reads print JSON with `--json`; every failure exits non-zero with a
 * one-line reason; bad input is rejected before anything starts (exit 2).
 */

export type { CliIo } from './cli-io';

class CommandFailed extends Error {}


async function readPassword(io: CliIo, opts: { passwordStdin?: boolean; generatePassword?: boolean }): Promise<{ password?: string; generatePassword: boolean }> {
  if (Boolean(opts.passwordStdin) === Boolean(opts.generatePassword)) {
    throw new InputError(['password: give exactly one of --password-stdin or --generate-password']);
  }
  if (opts.generatePassword) return { generatePassword: true };
  const text = (await io.readStdin()).replace(/\r?\n$/, '');
  if (!text) throw new InputError(['--password-stdin: no password on standard input']);
  return { password: text, generatePassword: false };
}

function parseEach<T>(values: string[], parse: (text: string) => T): T[] {
  const problems: string[] = [];
  const parsed: T[] = [];
  for (const value of values) {
    try {
      parsed.push(parse(value));
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  if (problems.length > 0) throw new InputError(problems);
  return parsed;
}

export function buildCli(io: CliIo): Command {
  const program = new Command('device-ops')
    .description('Durable device operations for EMQX, on Temporal')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr });

  const print = (json: boolean | undefined, value: unknown, human: () => string): void => printResult(io, json, value, human);
  const withOps = <T>(work: (ops: DeviceOps) => Promise<T>): Promise<T> => withConnectedOps(io, work);

  /** Waits for a workflow and prints its outcome; a failed workflow prints status failed and exits 1. */
  const finish = async <R extends object>(
    handle: WorkflowHandle,
    json: boolean | undefined,
    clientId: string,
    describe: (result: R) => string,
    generatedPassword?: string,
    /** A completed workflow whose result still means the command did not do what was asked. */
    unmet?: (result: R) => string | undefined,
  ): Promise<void> => {
    try {
      const result = (await handle.result()) as R;
      const problem = unmet?.(result);
      if (problem !== undefined) {
        if (json) print(true, { clientId, workflowId: handle.workflowId, ...result, status: 'failed', error: problem }, () => '');
        throw new CommandFailed(problem);
      }
      const shown = generatedPassword ? { generatedPassword } : {};
      print(json, { clientId, workflowId: handle.workflowId, ...result, ...shown, status: 'completed' }, () => describe(result));
    } catch (err) {
      if (err instanceof CommandFailed) throw err;
      // Loaded here, not at start-up: the Temporal client is already in memory once a handle exists.
      const { WorkflowFailedError } = await import('@temporalio/client');
      if (!(err instanceof WorkflowFailedError)) throw err;
      const reason = failureMessage(err);
      if (json) print(true, { clientId, workflowId: handle.workflowId, status: 'failed', error: reason }, () => '');
      throw new CommandFailed(reason);
    }
  };

  const started = (json: boolean | undefined, clientId: string, handle: WorkflowHandle): void =>
    print(json, { clientId, workflowId: handle.workflowId, status: 'started' }, () => `started ${handle.workflowId}`);

  program
    .command('provision')
    .description('create or update a device: credentials, ACL, desired subscriptions')
    .argument('<clientId>')
    .option('--username <username>', 'MQTT username (default: the client id)')
    .option('--password-stdin', 'read the password from standard input')
    .option('--generate-password', 'generate a password and print it once (implies --wait)')
    .option('--acl <rule>', 'ACL rule "<allow|deny> <publish|subscribe|all> <topic>" (repeatable)', collect, [])
    .option('--subscribe <topic>', 'desired proxy subscription "<topic>[:qos]" (repeatable)', collect, [])
    .option('--alarm-grace <duration>', 'offline alarm grace period for this device, e.g. 5m')
    .option('--alarm-escalation <durations>', 'escalation delays for this device, e.g. 15m,1h')
    .option('--tag <tag>', 'tag for campaign selection (repeatable)', collect, [])
    .option('--jobs', "allow the device its own job and command topics: subscribe to them, publish statuses and replies (docs/jobs.md)")
    .option('--wait', 'wait for the workflow to finish')
    .option('--json', 'print JSON')
    .action(async (clientId: string, opts: Record<string, unknown>) => {
      const secret = await readPassword(io, opts);
      const acl = parseEach(opts.acl as string[], parseAclRule);
      const subscriptions = parseEach(opts.subscribe as string[], parseSubscription);
      const alarmPolicy = alarmPolicyOf(opts.alarmGrace as string | undefined, opts.alarmEscalation as string | undefined);
      const input = {
        clientId,
        ...(opts.username ? { username: opts.username as string } : {}),
        ...secret,
        acl,
        subscriptions,
        tags: opts.tag as string[],
        ...(alarmPolicy ? { alarmPolicy } : {}),
        jobs: opts.jobs === true,
      };
      await withOps(async (ops) => {
        const { handle, generatedPassword } = await ops.startProvisioning(input);
        if (!opts.wait && !secret.generatePassword) return started(opts.json as boolean, clientId, handle);
        await finish<{ username: string; online: boolean }>(handle, opts.json as boolean, clientId, (r) =>
          [
            `provisioned ${clientId} (username ${r.username}, ${r.online ? 'online: subscriptions applied' : 'offline'})`,
            ...(generatedPassword ? [`password: ${generatedPassword}`, 'store it now: it is not shown again'] : []),
          ].join('\n'),
          generatedPassword,
        );
      });
    });

  program
    .command('provision-fleet')
    .description('provision many devices from a CSV or NDJSON file')
    .requiredOption('--file <file>', 'devices.csv or devices.ndjson')
    .option('--wait', 'wait for the import to finish')
    .option('--json', 'print JSON')
    .action(async (opts: { file: string; wait?: boolean; json?: boolean }) => {
      const format = fleetFormatOf(opts.file);
      let text: string;
      try {
        text = readFileSync(opts.file, 'utf8');
      } catch (err) {
        throw new InputError([`--file: cannot read ${opts.file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`]);
      }
      const devices = parseFleetFile(text, format);
      await withOps(async (ops) => {
        const { fleetId, handle } = await ops.startFleetProvisioning(devices, (sent, total) => {
          if (!opts.json) io.stderr(`sent chunk ${sent}/${total}\n`);
        });
        if (!opts.wait) {
          print(opts.json, { fleetId, workflowId: handle.workflowId, total: devices.length, status: 'started' }, () => `started ${handle.workflowId} (${devices.length} devices)`);
          return;
        }
        const result = await handle.result();
        print(opts.json, { ...result, workflowId: handle.workflowId }, () =>
          [
            `fleet ${fleetId}: ${result.provisioned} provisioned, ${result.failed} failed of ${result.total}`,
            ...result.failures.map((f) => `  ${f.clientId}: ${f.error}`),
          ].join('\n'),
        );
        if (result.failed > 0) throw new CommandFailed(`${result.failed} of ${result.total} devices failed`);
      });
    });

  program
    .command('deprovision')
    .argument('<clientId>')
    .description('remove credentials, ACL and desired subscriptions; kick the device')
    .option('--wait', 'wait for the workflow to finish')
    .option('--json', 'print JSON')
    .action(async (clientId: string, opts: { wait?: boolean; json?: boolean }) => {
      await withOps(async (ops) => {
        const handle = await ops.startDeprovisioning(clientId);
        if (!opts.wait) return started(opts.json, clientId, handle);
        await finish<{ kicked: boolean; hadCredentials?: boolean }>(
          handle,
          opts.json,
          clientId,
          (r) => `deprovisioned ${clientId}${r.kicked ? ' (kicked)' : ''}`,
          undefined,
          (r) => (r.hadCredentials === false && !r.kicked ? `device ${clientId} is unknown: EMQX had no credentials for it and it was not connected; check the client id (device-ops status ${clientId})` : undefined),
        );
      });
    });

  program
    .command('rotate-credentials')
    .argument('<clientId>')
    .option('--password-stdin', 'read the new password from standard input')
    .option('--generate-password', 'generate a password and print it once (implies --wait)')
    .option('--kick', 'disconnect the device so it reconnects with the new password')
    .option('--wait', 'wait for the workflow to finish')
    .option('--json', 'print JSON')
    .action(async (clientId: string, opts: Record<string, unknown>) => {
      const secret = await readPassword(io, opts);
      await withOps(async (ops) => {
        const { handle, generatedPassword } = await ops.startRotation({ clientId, ...secret, kick: Boolean(opts.kick) });
        if (!opts.wait && !secret.generatePassword) return started(opts.json as boolean, clientId, handle);
        await finish<{ kicked: boolean }>(
          handle,
          opts.json as boolean,
          clientId,
          (r) => [`rotated credentials of ${clientId}${r.kicked ? ' (kicked)' : ''}`, ...(generatedPassword ? [`password: ${generatedPassword}`] : [])].join('\n'),
          generatedPassword,
        );
      });
    });

  program
    .command('kick')
    .argument('<clientId>')
    .option('--json', 'print JSON')
    .action(async (clientId: string, opts: { json?: boolean }) => {
      const result = await withOps((ops) => ops.kick(clientId));
      print(opts.json, result, () => (result.kicked ? `kicked ${clientId}` : `${clientId} was not connected`));
    });

  const acl = program.command('acl').description("show or set a device's ACL rules");
  acl
    .command('show')
    .argument('<clientId>')
    .option('--json', 'print JSON')
    .action(async (clientId: string, opts: { json?: boolean }) => {
      const result = await withOps((ops) => ops.acl(clientId));
      print(opts.json, result, () =>
        result.emqx === null
          ? `${clientId}: no ACL rules in EMQX`
          : result.emqx.map((r) => `${r.permission} ${r.action} ${r.topic}`).join('\n'),
      );
    });
  acl
    .command('set')
    .argument('<clientId>')
    .option('--acl <rule>', 'ACL rule "<allow|deny> <publish|subscribe|all> <topic>" (repeatable)', collect, [])
    .option('--json', 'print JSON')
    .action(async (clientId: string, opts: { acl: string[]; json?: boolean }) => {
      const rules = parseEach(opts.acl, parseAclRule);
      const result = await withOps((ops) => ops.setAcl(clientId, rules));
      print(opts.json, result, () => `set ${result.rules.length} ACL rules for ${clientId} (plus a final deny)`);
    });

  const subs = program.command('subscriptions').description("show or set a device's desired proxy subscriptions");
  subs
    .command('show')
    .argument('<clientId>')
    .option('--json', 'print JSON')
    .action(async (clientId: string, opts: { json?: boolean }) => {
      const result = await withOps((ops) => ops.subscriptions(clientId));
      print(opts.json, result, () =>
        [
          `desired: ${result.desired.map((s) => `${s.topic}:${s.qos}`).join(', ') || '(none)'}`,
          `live:    ${result.live === null ? '(device offline)' : result.live.map((s) => `${s.topic}:${s.qos}`).join(', ') || '(none)'}`,
        ].join('\n'),
      );
    });
  subs
    .command('set')
    .argument('<clientId>')
    .option('--subscribe <topic>', 'desired subscription "<topic>[:qos]" (repeatable; none clears)', collect, [])
    .option('--json', 'print JSON')
    .action(async (clientId: string, opts: { subscribe: string[]; json?: boolean }) => {
      const subscriptions = parseEach(opts.subscribe, parseSubscription);
      // What the command reports is read back from EMQX after the workflow, never assumed from it.
      const { result, live } = await withOps(async (ops) => {
        const applied = await ops.setSubscriptions(clientId, subscriptions);
        return { result: applied, live: (await ops.subscriptions(clientId)).live };
      });
      const liveTopics = new Set((live ?? []).map((s) => s.topic));
      const notLive = subscriptions.filter((s) => !liveTopics.has(s.topic)).map((s) => s.topic);
      print(opts.json, { ...result, live, notLive }, () =>
        [
          `desired for ${clientId}: ${subscriptions.map((s) => `${s.topic}:${s.qos}`).join(', ') || '(none)'}`,
          live === null
            ? 'live:    none, the device is offline: its desired subscriptions are applied when it connects'
            : `live:    ${live.map((s) => `${s.topic}:${s.qos}`).join(', ') || '(none)'}`,
          ...(live !== null && notLive.length > 0 ? [`not live: ${notLive.join(', ')} (EMQX did not confirm them; they are applied again on the next connect)`] : []),
        ].join('\n'),
      );
    });

  program
    .command('status')
    .argument('<clientId>')
    .option('--json', 'print JSON')
    .action(async (clientId: string, opts: { json?: boolean }) => {
      const s = await withOps((ops) => ops.status(clientId));
      const disagree = s.presence !== 'unknown' && (s.presence === 'online') !== s.online;
      print(opts.json, { ...s, ...(disagree ? { note: 'EMQX live view and recorded presence disagree' } : {}) }, () =>
        [
          `${clientId}: ${s.online ? 'online' : 'offline'} in EMQX; recorded presence ${s.presence}${disagree ? ' (disagrees: reconciliation will correct it)' : ''}`,
          `provisioned: ${s.provisioned ? 'yes' : 'no'}${s.username ? ` (username ${s.username})` : ''}`,
          `alarm: ${s.alarm ? `${s.alarm.kind} alarm, level ${s.alarm.level}, ${s.alarm.state} since ${s.alarm.raisedAt}` : 'none'}`,
        ].join('\n'),
      );
    });

  program
    .command('history')
    .argument('<clientId>')
    .option('--limit <n>', 'how many events', (v) => Number(v), 50)
    .option('--json', 'print JSON')
    .action(async (clientId: string, opts: { limit: number; json?: boolean }) => {
      if (!Number.isInteger(opts.limit) || opts.limit < 1 || opts.limit > 10_000) {
        throw new InputError(['--limit: must be a whole number from 1 to 10000']);
      }
      const events = await withOps((ops) => ops.history(clientId, opts.limit));
      const out = events.map((e) => ({ event: e.event, at: e.at, ...(e.reason ? { reason: e.reason } : {}) }));
      print(opts.json, out, () => (out.length ? out.map((e) => `${e.at}  ${e.event}${e.reason ? ` (${e.reason})` : ''}`).join('\n') : `no events recorded for ${clientId}`));
    });

  registerOpsCommands(program, io);
  registerPresenceCommands(program, io);
  registerCampaignCommands(program, io);
  registerCommandCommands(program, io);
  registerEmqxCommands(program, io);
  program.addOption(new Option('--no-color').hideHelp());
  return program;
}

/** The alarm flags given; what is not given stays the worker's default (ALARM_GRACE_PERIOD, ALARM_ESCALATION_STEPS). */
function alarmPolicyOf(grace?: string, escalation?: string): AlarmPolicy | undefined {
  if (grace === undefined && escalation === undefined) return undefined;
  return {
    ...(grace !== undefined ? { graceMs: durationFlag(grace, '--alarm-grace') } : {}),
    ...(escalation !== undefined ? { escalationMs: escalation.split(',').map((s) => durationFlag(s, '--alarm-escalation')) } : {}),
  };
}

/** Runs the CLI; returns the exit code (0 ok, 1 failed, 2 bad input or configuration). */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const program = buildCli(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof InputError) {
      io.stderr(`error: ${err.message}\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      io.stderr(`error: ${err.message}\n`);
      return 2;
    }
    io.stderr(`error: ${failureMessage(err)}${unreachableHint(err)}\n`);
    return 1;
  }
}

/** An EMQX API that does not answer is named with its variable, like Temporal and MongoDB (cli-io.ts). */
function unreachableHint(err: unknown): string {
  const connectionFailed = err instanceof Error && (err as { type?: string }).type === 'EmqxUnavailableError' && (err as { status?: number }).status === 0;
  return connectionFailed ? ` (EMQX_API_URL). ${STACK_HINT}` : '';
}
