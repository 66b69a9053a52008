import type { Command } from 'commander';
import { loadConfig, temporalConnectionOptions } from '../../config';
import { assertReachable, durationFlag, printResult, withOps, type CliIo } from './cli-io';

/** Operator commands: broker statistics, and one-time Temporal cluster setup. */
export function registerOpsCommands(program: Command, io: CliIo): void {
  program
    .command('stats')
    .description('broker statistics now (online devices, subscriptions, topics, messages and rates), or trends with --since')
    .option('--since <duration>', 'show trends from the stored snapshots, e.g. 24h')
    .option('--json', 'print JSON')
    .action(async (opts: { since?: string; json?: boolean }) => {
      const sinceMs = opts.since === undefined ? undefined : durationFlag(opts.since, '--since');
      await withOps(io, async (ops) => {
        if (sinceMs === undefined) {
          const s = await ops.brokerStats();
          const rates = s.rates ? `in ${s.rates.received}/s, out ${s.rates.sent}/s, dropped ${s.rates.dropped}/s` : 'rates: no snapshot yet';
          printResult(io, opts.json, s, () =>
            [`online ${s.online}  sessions ${s.connections}  subscriptions ${s.subscriptions}  topics ${s.topics}  retained ${s.retained}`, `messages received ${s.messages.received}, sent ${s.messages.sent}, dropped ${s.messages.dropped}; ${rates}`].join('\n'),
          );
          return;
        }
        const t = await ops.statsTrend(sinceMs);
        printResult(io, opts.json, t, () =>
          [`since ${t.since}: ${t.snapshots} snapshots`, `online   ${t.online.chart}  (min ${t.online.min}, max ${t.online.max}, now ${t.online.last})`, `msgs in  ${t.messagesPerSecond.chart}  (per second)`].join('\n'),
        );
      });
    });

  const temporal = program.command('temporal').description('Temporal cluster setup');
  temporal
    .command('setup')
    .description('register the search attributes (DeviceId, CampaignId, DeviceOperation, Presence, AlarmLevel) on the cluster')
    .action(async () => {
      const config = loadConfig(['temporal']);
      await assertReachable({ temporalAddress: config.temporal.TEMPORAL_ADDRESS });
      // Loaded by this command only: the Temporal client is most of the CLI's start-up time.
      const [{ Connection }, { registerSearchAttributes }] = await Promise.all([import('@temporalio/client'), import('../../temporal/search-attribute-setup.js')]);
      const connection = await Connection.connect(temporalConnectionOptions(config.temporal));
      try {
        const result = await registerSearchAttributes(connection, config.temporal.TEMPORAL_NAMESPACE);
        io.stdout(`search attributes: added ${result.added.join(', ') || 'none'}; already present ${result.existing.join(', ') || 'none'}\n`);
      } finally {
        await connection.close();
      }
    });
}
