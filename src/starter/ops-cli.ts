import { Connection } from '@temporalio/client';
import type { Command } from 'commander';
import { loadConfig, parseDurationMs, temporalConnectionOptions } from '../config';
import { InputError } from '../domain/input-error';
import type { CliIo } from './cli-io';
import { registerSearchAttributes } from './temporal-setup';

/** Operator commands: broker statistics, and one-time Temporal cluster setup. */
export function registerOpsCommands(program: Command, io: CliIo): void {
  program
    .command('stats')
    .description('broker statistics now (online devices, subscriptions, topics, messages and rates), or trends with --since')
    .option('--since <duration>', 'show trends from the stored snapshots, e.g. 24h')
    .option('--json', 'print JSON')
    .action(async (opts: { since?: string; json?: boolean }) => {
      let sinceMs: number | undefined;
      if (opts.since !== undefined) {
        try {
          sinceMs = parseDurationMs(opts.since);
        } catch {
          throw new InputError([`--since: "${opts.since}" must be a duration such as 30m, 24h`]);
        }
      }
      const connected = await io.connect();
      const ops = connected.ops;
      try {
        if (sinceMs === undefined) {
          const s = await ops.brokerStats();
          const out = JSON.stringify(s, null, 2);
          const rates = s.rates ? `in ${s.rates.received}/s, out ${s.rates.sent}/s, dropped ${s.rates.dropped}/s` : 'rates: no snapshot yet';
          io.stdout(
            `${opts.json ? out : [`online ${s.online}  sessions ${s.connections}  subscriptions ${s.subscriptions}  topics ${s.topics}  retained ${s.retained}`, `messages received ${s.messages.received}, sent ${s.messages.sent}, dropped ${s.messages.dropped}; ${rates}`].join('\n')}\n`,
          );
          return;
        }
        const t = await ops.statsTrend(sinceMs);
        io.stdout(
          `${opts.json ? JSON.stringify(t, null, 2) : [`since ${t.since}: ${t.snapshots} snapshots`, `online   ${t.online.chart}  (min ${t.online.min}, max ${t.online.max}, now ${t.online.last})`, `msgs in  ${t.messagesPerSecond.chart}  (per second)`].join('\n')}\n`,
        );
      } finally {
        await connected.close();
      }
    });

  const temporal = program.command('temporal').description('Temporal cluster setup');
  temporal
    .command('setup')
    .description('register the search attributes (DeviceId, CampaignId, DeviceOperation, Presence, AlarmLevel) on the cluster')
    .action(async () => {
      const config = loadConfig(['temporal']);
      const connection = await Connection.connect(temporalConnectionOptions(config.temporal));
      try {
        const result = await registerSearchAttributes(connection, config.temporal.TEMPORAL_NAMESPACE);
        io.stdout(`search attributes: added ${result.added.join(', ') || 'none'}; already present ${result.existing.join(', ') || 'none'}\n`);
      } finally {
        await connection.close();
      }
    });
}
