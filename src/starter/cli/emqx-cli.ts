import type { Command } from 'commander';
import { z } from 'zod';
import { effectiveEnv, loadConfig } from '../../config';
import { TopicFilter } from '../../domain/schemas/device';
import { parseInput } from '../../domain/input-error';
import { AuthenticatorMismatchError, createEmqxClientFromConfig, DEFAULT_EVENT_TOPICS, type AccessControlSetup, type EventWebhookResult } from '../../emqx';
import { replyTopicFilters } from '../../domain/device-topics';
import { collect, printResult, withOps, type CliIo } from './cli-io';
import { runDoctor, type CheckResult } from './doctor';

/**
 * The `emqx` command group (`emqx setup`, `emqx setup-webhook`) and `doctor`. `emqx setup` and
 * `doctor` talk to EMQX (and, for doctor, to Temporal, MongoDB and the adapter) directly from the
 * configuration, so they work before anything else is set up.
 */

export class SetupFailed extends Error {}

export interface WebhookSetupFlags {
  url?: string;
  token?: string;
  topic: string[];
}

export interface EmqxSetupOptions extends WebhookSetupFlags {
  webhook: boolean;
  disableFileSource: boolean;
}

export interface EmqxSetupReport extends AccessControlSetup {
  webhook?: EventWebhookResult & { url: string; topics: string[] };
}

/** Flags first, then the configuration; every problem is reported before anything starts. */
export function webhookSetupFrom(opts: WebhookSetupFlags, env: Record<string, string | undefined> = effectiveEnv()): { url: string; token: string; messageTopics: string[] } {
  if (opts.token !== undefined) parseInput(z.string().min(16, 'must be at least 16 characters'), opts.token, '--token');
  const config = loadConfig(['webhook'], { ...env, ...(opts.token !== undefined ? { WEBHOOK_TOKEN: opts.token } : {}) }).webhook;
  const url = opts.url ?? config.WEBHOOK_PUBLIC_URL ?? `http://${config.WEBHOOK_HOST}:${config.WEBHOOK_PORT}/emqx/events`;
  const topics = opts.topic.length > 0 ? opts.topic : config.WEBHOOK_MESSAGE_TOPICS;
  return {
    url: parseInput(z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }), url, '--url'),
    token: config.WEBHOOK_TOKEN,
    messageTopics: topics.map((t) => parseInput(TopicFilter, t, '--topic')),
  };
}

/** The adapter's address alone (`http://webhook:8080`) means its events endpoint. */
function eventsUrl(url: string): string {
  const target = new URL(url);
  if (target.pathname === '/') target.pathname = '/emqx/events';
  return target.toString();
}

/** `device-ops emqx setup`: access control first, then the event webhook; idempotent. */
export async function runEmqxSetup(opts: EmqxSetupOptions, env: Record<string, string | undefined> = effectiveEnv()): Promise<EmqxSetupReport> {
  const webhook = opts.webhook ? webhookSetupFrom(opts, env) : undefined;
  const emqx = createEmqxClientFromConfig(loadConfig(['emqx'], env).emqx);
  try {
    let access: AccessControlSetup;
    try {
      access = await emqx.ensureAccessControl({ noMatch: 'deny', disableFileSource: opts.disableFileSource });
    } catch (err) {
      if (err instanceof AuthenticatorMismatchError) throw new SetupFailed(err.message);
      throw err;
    }
    if (!webhook) return access;
    const url = eventsUrl(webhook.url);
    const topics = [...DEFAULT_EVENT_TOPICS, ...webhook.messageTopics];
    const replyTopics = replyTopicFilters(loadConfig(['jobs'], env).jobs);
    const result = await emqx.ensureEventWebhook({ url, token: webhook.token, topics, replyTopics });
    return { ...access, webhook: { ...result, url, topics } };
  } finally {
    await emqx.close();
  }
}

function describeSetup(report: EmqxSetupReport): string {
  const lines = [
    `authenticator password_based:built_in_database (user_id_type clientid, sha256 prefix salt): ${report.authenticator}`,
    `authorization source built_in_database (first): ${report.authzSource}`,
    `authorization.no_match deny: ${report.noMatch}`,
    `file authorization source: ${report.fileSource}${report.fileSource === 'enabled' ? " (EMQX's stock acl.conf ends with {allow, all}: no_match never applies; --disable-file-source turns it off)" : ''}`,
  ];
  const w = report.webhook;
  if (w) lines.push(`event webhook: EMQX posts ${w.topics.length} topics to ${w.url} (connector ${w.connector}, action ${w.action}, rule ${w.ruleId} ${w.rule})`);
  if (w?.replies) lines.push(`device replies: EMQX posts ${w.replies.topics.join(', ')} to the adapter's /emqx/replies (rule ${w.replies.ruleId} ${w.replies.rule})`);
  return lines.join('\n');
}

function describeChecks(results: CheckResult[]): string {
  return results.map((r) => `${r.status === 'ok' ? 'ok  ' : r.status === 'warn' ? 'WARN' : 'FAIL'}  ${r.name}: ${r.detail}${r.fix ? `\n      fix: ${r.fix}` : ''}`).join('\n');
}

export function registerEmqxCommands(program: Command, io: CliIo): void {
  const emqx = program.command('emqx').description('EMQX integration');

  emqx
    .command('setup')
    .description('make EMQX ready: built-in database authenticator (client id, sha256), built_in_database authorization source, no_match deny, event webhook; idempotent')
    .option('--url <url>', 'where EMQX posts events; a bare address gets /emqx/events (default WEBHOOK_PUBLIC_URL, or http://WEBHOOK_HOST:WEBHOOK_PORT/emqx/events)')
    .option('--token <token>', 'the shared secret (default WEBHOOK_TOKEN; prefer the variable: arguments show in ps)')
    .option('--topic <filter>', 'also send publishes on this topic filter (repeatable; default WEBHOOK_MESSAGE_TOPICS)', collect, [] as string[])
    .option('--no-webhook', 'leave the event webhook alone')
    .option('--disable-file-source', "disable the file authorization source (EMQX's stock acl.conf allows everything no other rule decides)")
    .option('--json', 'print JSON')
    .action(async (opts: WebhookSetupFlags & { webhook: boolean; disableFileSource?: boolean; json?: boolean }) => {
      const report = await runEmqxSetup({ ...opts, disableFileSource: opts.disableFileSource === true });
      // The token is never printed.
      printResult(io, opts.json, report, () => describeSetup(report));
    });

  emqx
    .command('setup-webhook')
    .description('only the event webhook part of `emqx setup`: connector, HTTP action (with the token) and rule; idempotent')
    .option('--url <url>', 'where EMQX posts events; a bare address gets /emqx/events (default WEBHOOK_PUBLIC_URL, or http://WEBHOOK_HOST:WEBHOOK_PORT/emqx/events)')
    .option('--token <token>', 'the shared secret (default WEBHOOK_TOKEN; prefer the variable: arguments show in ps)')
    .option('--topic <filter>', 'also send publishes on this topic filter (repeatable; default WEBHOOK_MESSAGE_TOPICS)', collect, [] as string[])
    .option('--json', 'print JSON')
    .action(async (opts: WebhookSetupFlags & { json?: boolean }) => {
      const setup = webhookSetupFrom(opts);
      const result = await withOps(io, (ops) => ops.setupEventWebhook(setup));
      // Never print the token.
      const out = { url: result.url, ruleId: result.ruleId, connector: result.connector, action: result.action, rule: result.rule, topics: result.topics, ...(result.replies ? { replies: result.replies } : {}) };
      printResult(io, opts.json, out, () => `EMQX posts ${result.topics.length} event topics to ${result.url} (connector ${result.connector}, action ${result.action}, rule ${result.ruleId} ${result.rule})`);
    });

  program
    .command('doctor')
    .description('check EMQX, its access control and webhook, the adapter, Temporal and MongoDB; one line each with a fix; exits 1 when a check fails')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }) => {
      const results = await runDoctor(effectiveEnv());
      printResult(io, opts.json, results, () => describeChecks(results));
      const failed = results.filter((r) => r.status === 'fail').map((r) => r.name);
      if (failed.length > 0) throw new SetupFailed(`${failed.length} check${failed.length > 1 ? 's' : ''} failed: ${failed.join(', ')}`);
    });
}
