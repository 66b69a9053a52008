/**
 * The EMQX side of the webhook adapter: an HTTP connector, an HTTP action and a rule that POST device
 * events to the adapter with the shared token (reference §8.2). Safe to run again: each piece is upserted.
 */
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
});
export type EventWebhookSpec = z.input<typeof EventWebhookSpec>;

export interface EventWebhookResult {
  connector: UpsertResult;
  action: UpsertResult;
  rule: UpsertResult;
  ruleId: string;
}

export async function ensureEventWebhook(http: EmqxHttp, spec: EventWebhookSpec, opts: CallOptions = {}): Promise<EventWebhookResult> {
  const { url, token, name, topics } = parseInput(EventWebhookSpec, spec, 'spec');
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
      pool_size: 8,
      connect_timeout: '15s',
      ssl: { enable: target.protocol === 'https:' },
    },
    opts,
  );
  const action = await upsertAction(
    http,
    {
      type: 'http',
      name,
      connector: name,
      enable: true,
      // No `body`: EMQX then sends the whole SELECT output as one JSON object.
      parameters: {
        path: `${target.pathname}${target.search}`,
        method: 'post',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        max_retries: 2,
        request_timeout: '15s',
      },
    },
    opts,
  );
  const from = topics.map((topic) => JSON.stringify(topic)).join(', ');
  const rule = await upsertRule(
    http,
    { id: ruleId, sql: `SELECT * FROM ${from}`, actions: [`http:${name}`], enable: true, description: 'device events to emqx-device-ops' },
    opts,
  );
  return { connector, action, rule, ruleId };
}
