import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { z } from 'zod';
import { NODE_NAME } from '../emqx-formats';
import type { FaultSwitchboard } from '../faults';
import { topicMatchesFilter } from '../topic';
import type { EventBody } from './events';
import { HttpConnectionPool } from './http-connection-pool';
import { HttpResourceStore, parseResourceId, type WebhookTarget } from './http-resources';
import { parseRuleSql, type SUPPORTED_EVENT_TOPICS } from './sql';
import { WebhookDeliveryQueue, type ActionMetrics, type AnswerTimes } from './webhook-delivery';

/**
 * Rules (`/rules`): each selects events by its FROM topics and hands them to its actions. Here
 * the only real action type is `http`; `{"function": "console"}` is accepted and logs.
 */

const RuleActionRef = z.union([z.string().min(1), z.looseObject({ function: z.literal('console') })]);

export const RuleInput = z.object({
  id: z.string().regex(/^[A-Za-z0-9_.:-]+$/, 'may use letters, digits and _ . : -').optional(),
  name: z.string().optional(),
  sql: z.string().min(1),
  actions: z.array(RuleActionRef).default([]),
  enable: z.boolean().default(true),
  description: z.string().default(''),
  metadata: z.record(z.string(), z.unknown()).default({}),
});
export type RuleInput = z.infer<typeof RuleInput>;
type RuleActionRef = z.infer<typeof RuleActionRef>;

export interface StoredRule {
  id: string;
  name: string;
  sql: string;
  from: string[];
  actions: RuleActionRef[];
  enable: boolean;
  description: string;
  metadata: Record<string, unknown>;
  createdAt: number;
  lastModifiedAt: number;
}

type EventTopic = (typeof SUPPORTED_EVENT_TOPICS)[number];

const EVENT_NAMES: Record<EventTopic, string> = {
  '$events/client_connected': 'client.connected',
  '$events/client_disconnected': 'client.disconnected',
  '$events/session_subscribed': 'session.subscribed',
  '$events/session_unsubscribed': 'session.unsubscribed',
};

export class RuleEngine {
  readonly resources = new HttpResourceStore();
  private readonly rules = new Map<string, StoredRule>();
  private readonly queues = new Map<string, WebhookDeliveryQueue>();
  /** Each HTTP connector's connections, by connector name; replaced when its settings change. */
  private readonly pools = new Map<string, HttpConnectionPool>();
  private stopped = false;

  constructor(private readonly deps: { faults: FaultSwitchboard; logger: Logger }) {}

  listRules(): StoredRule[] {
    return [...this.rules.values()];
  }

  getRule(id: string): StoredRule | undefined {
    return this.rules.get(id);
  }

  /** Parses the SQL (throws RuleSqlError) and stores the rule under `id`, replacing any. */
  putRule(id: string, input: RuleInput): StoredRule {
    const { from } = parseRuleSql(input.sql);
    const now = Date.now();
    const rule: StoredRule = {
      id,
      name: input.name ?? this.rules.get(id)?.name ?? '',
      sql: input.sql,
      from,
      actions: input.actions,
      enable: input.enable,
      description: input.description,
      metadata: input.metadata,
      createdAt: this.rules.get(id)?.createdAt ?? now,
      lastModifiedAt: now,
    };
    this.rules.set(id, rule);
    return rule;
  }

  deleteRule(id: string): boolean {
    return this.rules.delete(id);
  }

  newRuleId(): string {
    return `rule_${randomBytes(4).toString('hex')}`;
  }

  rulesUsingAction(actionId: string): string[] {
    return this.listRules()
      .filter((r) => r.actions.includes(actionId))
      .map((r) => r.id);
  }

  removeActionFromRules(actionId: string): void {
    for (const rule of this.rules.values()) rule.actions = rule.actions.filter((a) => a !== actionId);
  }

  /** Stops the action's delivery queue; call when the action is deleted. */
  forgetAction(name: string): void {
    this.queues.get(name)?.stop();
    this.queues.delete(name);
  }

  actionMetrics(name: string): ActionMetrics {
    return this.queueFor(name).metrics();
  }

  resetActionMetrics(name: string): void {
    this.queueFor(name).resetMetrics();
  }

  /** How fast the receiver answered the action's requests (not an EMQX metric; benchmarks read it). */
  actionAnswerTimes(name: string): AnswerTimes {
    return this.queueFor(name).answerTimes();
  }

  /** Delivery counters of every HTTP action, keyed by action id (`http:<name>`). */
  deliveryStats(): Record<string, ActionMetrics> {
    return Object.fromEntries(this.resources.listActions().map((a) => [`http:${a.name}`, this.actionMetrics(a.name)]));
  }

  fireEvent(topic: EventTopic, body: EventBody): void {
    this.fire((rule) => rule.from.includes(topic), EVENT_NAMES[topic], body);
  }

  /** `message.publish` for rules whose FROM has a topic filter matching `topic`. */
  fireMessagePublish(topic: string, body: EventBody): void {
    this.fire(
      (rule) => rule.from.some((filter) => !filter.startsWith('$events/') && topicMatchesFilter(topic, filter)),
      'message.publish',
      body,
    );
  }

  stop(): void {
    this.stopped = true;
    for (const queue of this.queues.values()) queue.stop();
  }

  /** Stops delivery and closes every connector's connections. */
  async close(): Promise<void> {
    this.stop();
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((pool) => pool.destroy()));
  }

  /** The connector's pool, opened again (as EMQX restarts the connector) when its settings changed. */
  private connectionFor(target: WebhookTarget, clientid: string): Dispatcher {
    let pool = this.pools.get(target.connectorName);
    if (!pool || !pool.sameSettings(target.connection)) {
      const old = pool;
      pool = new HttpConnectionPool(target.connection);
      this.pools.set(target.connectorName, pool);
      old?.close().catch((err: unknown) => this.deps.logger.warn({ err, connector: target.connectorName }, 'closing the old connections failed'));
    }
    return pool.pick(clientid);
  }

  private fire(selects: (rule: StoredRule) => boolean, eventName: string, body: EventBody): void {
    if (this.stopped) return;
    const timestamp = Date.now();
    for (const rule of this.rules.values()) {
      if (!rule.enable || !selects(rule)) continue;
      const output = { ...body, event: eventName, timestamp, node: NODE_NAME, metadata: { rule_id: rule.id } };
      for (const action of rule.actions) this.runAction(action, output);
    }
  }

  private runAction(action: RuleActionRef, output: EventBody): void {
    if (typeof action !== 'string') {
      this.deps.logger.info({ event: output }, 'rule console action');
      return;
    }
    const id = parseResourceId(action);
    if (id?.type !== 'http' || !this.resources.getAction(id.name)) {
      this.deps.logger.debug({ action }, 'rule references an unknown action');
      return;
    }
    this.queueFor(id.name).enqueue(output);
  }

  private queueFor(name: string): WebhookDeliveryQueue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new WebhookDeliveryQueue(`http:${name}`, () => this.resources.webhookTarget(name), {
        ...this.deps,
        dispatcherFor: (target, clientid) => this.connectionFor(target, clientid),
      });
      this.queues.set(name, queue);
      if (this.stopped) queue.stop();
    }
    return queue;
  }
}
