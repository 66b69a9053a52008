import type { Command } from 'commander';
import { z } from 'zod';
import { effectiveEnv, loadConfig } from '../config';
import { ClientId, TopicFilter } from '../domain/device';
import { parseInput } from '../domain/input-error';
import { AlarmNote } from '../domain/presence-input';
import type { DeviceOps } from './client';
import { collect, printResult, withOps as withConnectedOps, type CliIo } from './cli-io';

/** Presence and alarm commands, and the EMQX side of the webhook: `alarms`, `alarm ack|clear`, `presence reconcile`, `emqx setup-webhook`. */
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

  program
    .command('emqx')
    .description('EMQX integration')
    .command('setup-webhook')
    .description('create the connector, HTTP action (with the token) and rule that send device events to the webhook adapter; idempotent')
    .option('--url <url>', 'where EMQX posts events; a bare address gets /emqx/events (default WEBHOOK_PUBLIC_URL, or http://WEBHOOK_HOST:WEBHOOK_PORT/emqx/events)')
    .option('--token <token>', 'the shared secret (default WEBHOOK_TOKEN; prefer the variable: arguments show in ps)')
    .option('--topic <filter>', 'also send publishes on this topic filter (repeatable; default WEBHOOK_MESSAGE_TOPICS)', collect, [] as string[])
    .option('--json', 'print JSON')
    .action(async (opts: { url?: string; token?: string; topic: string[]; json?: boolean }) => {
      const setup = webhookSetupFrom(opts);
      const result = await withOps((ops) => ops.setupEventWebhook(setup));
      // Never print the token.
      const out = { url: result.url, ruleId: result.ruleId, connector: result.connector, action: result.action, rule: result.rule, topics: result.topics };
      print(opts.json, out, () => `EMQX posts ${result.topics.length} event topics to ${result.url} (connector ${result.connector}, action ${result.action}, rule ${result.ruleId} ${result.rule})`);
    });
}

/** Flags first, then the configuration; every problem is reported before anything starts. */
function webhookSetupFrom(opts: { url?: string; token?: string; topic: string[] }): { url: string; token: string; messageTopics: string[] } {
  if (opts.token !== undefined) parseInput(z.string().min(16, 'must be at least 16 characters'), opts.token, '--token');
  const env = effectiveEnv();
  const config = loadConfig(['webhook'], { ...env, ...(opts.token !== undefined ? { WEBHOOK_TOKEN: opts.token } : {}) }).webhook;
  const url = opts.url ?? config.WEBHOOK_PUBLIC_URL ?? `http://${config.WEBHOOK_HOST}:${config.WEBHOOK_PORT}/emqx/events`;
  const topics = opts.topic.length > 0 ? opts.topic : config.WEBHOOK_MESSAGE_TOPICS;
  return {
    url: parseInput(z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }), url, '--url'),
    token: config.WEBHOOK_TOKEN,
    messageTopics: topics.map((t) => parseInput(TopicFilter, t, '--topic')),
  };
}
