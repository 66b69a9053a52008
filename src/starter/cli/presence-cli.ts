import type { Command } from 'commander';
import { z } from 'zod';
import { ClientId } from '../../domain/schemas/device';
import { parseInput } from '../../domain/input-error';
import { AlarmNote } from '../../domain/schemas/presence';
import type { DeviceOps } from '../client/index';
import { printResult, withOps as withConnectedOps, type CliIo } from './cli-io';

/** Presence and alarm commands: `alarms`, `alarm ack|clear`, `presence reconcile`. */
export function registerPresenceCommands(program: Command, io: CliIo): void {
  const print = (json: boolean | undefined, value: unknown, human: () => string): void => printResult(io, json, value, human);
  const withOps = <T>(work: (ops: DeviceOps) => Promise<T>): Promise<T> => withConnectedOps(io, work);

  program
    .command('alarms')
    .description('offline and flapping alarms, newest first')
    .option('--active', 'only open alarms (active or acknowledged)')
    .option('--limit <n>', 'how many alarms', (v) => Number(v), 100)
    .option('--json', 'print JSON')
    .action(async (opts: { active?: boolean; limit: number; json?: boolean }) => {
      parseInput(z.int('must be a whole number').min(1).max(10_000), opts.limit, '--limit');
      const alarms = await withOps((ops) => ops.alarms({ open: opts.active === true, limit: opts.limit }));
      print(opts.json, alarms, () =>
        alarms.length === 0
          ? `no ${opts.active ? 'open ' : ''}alarms`
          : alarms.map((a) => `${a.raisedAt}  ${a.clientId}  ${a.kind} level ${a.level}  ${a.state}${a.clearedBy ? ` (${a.clearedBy})` : ''}`).join('\n'),
      );
    });

  const alarm = program.command('alarm').description("acknowledge or clear a device's alarm");
  for (const [name, description] of [
    ['ack', 'acknowledge the active alarm: escalation stops'],
    ['clear', 'clear the open alarm by hand'],
  ] as const) {
    alarm
      .command(name)
      .description(description)
      .argument('<clientId>')
      .option('--note <text>', 'why (recorded with the alarm)')
      .option('--json', 'print JSON')
      .action(async (clientId: string, opts: { note?: string; json?: boolean }) => {
        const id = parseInput(ClientId, clientId, 'clientId');
        const note = opts.note === undefined ? undefined : parseInput(AlarmNote, opts.note, '--note');
        const action = note === undefined ? {} : { note };
        const result = await withOps((ops) => (name === 'ack' ? ops.acknowledgeAlarm(id, action) : ops.clearAlarm(id, action)));
        print(opts.json, { clientId: id, ...result }, () => `${id}: ${result.kind} alarm level ${result.level} ${result.state}`);
      });
  }

  program
    .command('presence')
    .description('presence maintenance')
    .command('reconcile')
    .description("compare EMQX's live clients with recorded presence now and correct the difference")
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const report = await withOps((ops) => ops.reconcilePresence());
      print(opts.json, report, () =>
        `EMQX lists ${report.live} connected; ${report.recordedOnline} recorded online; corrected ${report.markedOffline} to offline and ${report.markedOnline} to online; ${report.untracked} connected clients are not tracked (no device record)`,
      );
    });
}
