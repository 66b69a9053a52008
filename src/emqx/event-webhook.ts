/**
 * The EMQX side of the webhook adapter: an HTTP connector, an HTTP action and a rule that POST device
 * events to the adapter with the shared token (docs/emqx-setup.md). Safe to run again: each piece is upserted.
 */
import { randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { CallOptions, EmqxHttp } from './http';
import { NonEmpty } from './inputs';
import { upsertAction, upsertConnector, upsertRule, type UpsertResult } from './integrations';
import { parseInput } from './parse';

export const DEFAULT_EVENT_TOPICS = [
  '$events/client_connected',
  '$events/client_disconnected',
  '$events/session_subscribed',
  '$events/session_unsubscribed',
] as const;

export const EventWebhookSpec = z.strictObject({
  /** Where EMQX sends events, e.g. `http://127.0.0.1:8080/emqx/events`. */
  url: z.url({ protocol: /^https?$/ }),
  /** Sent as `Authorization: Bearer <token>`; EMQX masks that header in its logs. */
  token: NonEmpty,
  /** Names the connector and action, and (with `_events`) the rule. Letters, digits, `_` and `-`. */
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9_-]*$/, 'must be letters, digits, _ or -')
    .default('device_ops'),
  /** `FROM` topics: event topics and/or message topic filters. */
  topics: z.array(NonEmpty).min(1).default([...DEFAULT_EVENT_TOPICS]),
  /**
   * Topic filters of device replies (job statuses, command replies: docs/jobs.md). When given, a
   * second action and rule (`<name>_replies`) POST their publishes to the adapter's `/emqx/replies`.
   */
  replyTopics: z.array(NonEmpty).default([]),
});
export type EventWebhookSpec = z.input<typeof EventWebhookSpec>;

/**
 * The HTTP action's delivery settings. The request timeout is `resource_opts.request_ttl`: the
 * HTTP connector times each request out after it, and a buffered event older than it is dropped
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_bridge_http/src/emqx_bridge_http_connector.erl
 * do_create_http_action/1); `parameters.request_timeout` is deprecated and ignored
 * (apps/emqx_bridge_http/src/emqx_bridge_http_schema.erl request_timeout_field/0). docs/emqx-setup.md
 * explains each value.
 */
export const EVENT_ACTION_RESOURCE_OPTS = {
  request_ttl: '45s',
  inflight_window: 100,
  worker_pool_size: 16,
  health_check_interval: '15s',
  query_mode: 'async',
} as const;
export const EVENT_ACTION_MAX_RETRIES = 3;
/**
 * The connector's connections to the adapter. EMQX sends one event per request (the HTTP action has no
 * batching), over `pool_size` connections, each pipelining up to `enable_pipelining` requests
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_bridge_http/src/emqx_bridge_http_connector.erl
 * fields(config): pos_integer, defaults 8 and 100). What is in flight at once is what the adapter's group
 * commit can batch, and also what a request waits behind: 8 x 8 = 64 requests lets one MongoDB write carry
 * dozens of events while keeping the answer time low (at 2,000 events/s, 64 in flight is 32 ms each; EMQX's
 * default 8 x 100 = 800 would be 400 ms). `hash` sends a client's events over one connection, so they reach
 * the adapter in the order EMQX sent them (docs/webhook-adapter.md, Ingest).
 */
export const EVENT_CONNECTOR_POOL_SIZE = 8;
export const EVENT_CONNECTOR_PIPELINING = 8;
export const EVENT_CONNECTOR_POOL_TYPE = 'hash';

/**
 * EMQX never shows the action's `authorization` header again (emqx_utils_redact), so the action's
 * description carries a salted scrypt fingerprint of the token: `doctor` recomputes it from
 * WEBHOOK_TOKEN to tell whether EMQX sends the token the adapter expects.
 */
const FINGERPRINT = /token-check scrypt\$([0-9a-f]{32})\$([0-9a-f]{32})/;

export function tokenFingerprint(token: string, salt = randomBytes(16).toString('hex')): string {
  return `token-check scrypt$${salt}$${scryptSync(token, salt, 16).toString('hex')}`;
}

/** Whether the description's fingerprint is this token's; undefined when there is none. */
export function fingerprintMatches(description: string | undefined, token: string): boolean | undefined {
  const found = FINGERPRINT.exec(description ?? '');
  if (!found?.[1] || !found[2]) return undefined;
  return timingSafeEqual(scryptSync(token, found[1], 16), Buffer.from(found[2], 'hex'));
}

export interface EventWebhookResult {
  connector: UpsertResult;
  action: UpsertResult;
  rule: UpsertResult;
  ruleId: string;
  replies?: { action: UpsertResult; rule: UpsertResult; ruleId: string; topics: string[] };
}

/** The replies endpoint next to the events one: `/emqx/events` -> `/emqx/replies`. */
export function repliesPath(eventsPath: string): string {
  return /\/events$/.test(eventsPath) ? eventsPath.replace(/\/events$/, '/replies') : `${eventsPath.replace(/\/$/, '')}/emqx/replies`;
}

export async function ensureEventWebhook(http: EmqxHttp, spec: EventWebhookSpec, opts: CallOptions = {}): Promise<EventWebhookResult> {
  const { url, token, name, topics, replyTopics } = parseInput(EventWebhookSpec, spec, 'spec');
  const target = new URL(url);
  const ruleId = `${name}_events`;
  const connector = await upsertConnector(
    http,
    {
      type: 'http',
      name,
      url: target.origin,
      enable: true,
      headers: { 'content-type': 'application/json' },
      pool_size: EVENT_CONNECTOR_POOL_SIZE,
      enable_pipelining: EVENT_CONNECTOR_PIPELINING,
      pool_type: EVENT_CONNECTOR_POOL_TYPE,
      connect_timeout: '15s',
      ssl: { enable: target.protocol === 'https:' },
    },
    opts,
  );
  const pipe = (actionName: string, path: string, what: string, id: string, from: string[]) =>
    upsertPipe(http, { connector: name, actionName, path, token, what, ruleId: id, from }, opts);
  const { action, rule } = await pipe(name, `${target.pathname}${target.search}`, 'device events', ruleId, topics);
  if (replyTopics.length === 0) return { connector, action, rule, ruleId };
  const repliesId = `${name}_replies`;
  const replies = await pipe(repliesId, `${repliesPath(target.pathname)}${target.search}`, 'device replies', repliesId, replyTopics);
  return { connector, action, rule, ruleId, replies: { ...replies, ruleId: repliesId, topics: replyTopics } };
}

/** One HTTP action on the connector and the rule that feeds it. */
async function upsertPipe(
  http: EmqxHttp,
  spec: { connector: string; actionName: string; path: string; token: string; what: string; ruleId: string; from: string[] },
  opts: CallOptions,
): Promise<{ action: UpsertResult; rule: UpsertResult }> {
  const action = await upsertAction(
    http,
    {
      type: 'http',
      name: spec.actionName,
      connector: spec.connector,
      enable: true,
      description: `${spec.what} to emqx-device-ops; ${tokenFingerprint(spec.token)}`,
      // No `body`: EMQX then sends the whole SELECT output as one JSON object.
      parameters: {
        path: spec.path,
        method: 'post',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${spec.token}` },
        max_retries: EVENT_ACTION_MAX_RETRIES,
      },
      resource_opts: { ...EVENT_ACTION_RESOURCE_OPTS },
    },
    opts,
  );
  // `SELECT *`: the adapter itself checks that the publisher is the device its topic names (src/domain/device-reply.ts).
  const from = spec.from.map((topic) => JSON.stringify(topic)).join(', ');
  const rule = await upsertRule(
    http,
    { id: spec.ruleId, sql: `SELECT * FROM ${from}`, actions: [`http:${spec.actionName}`], enable: true, description: `${spec.what} to emqx-device-ops` },
    opts,
  );
  return { action, rule };
}
