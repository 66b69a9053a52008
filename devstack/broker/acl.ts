import { z } from 'zod';
import { topicMatchesFilter } from './topic';

/**
 * EMQX built-in database authorization rules: per client id, per username and for all. Checked in
 * that order, the first matching rule wins; with no match the next source decides, and after the
 * last one `authorization.no_match` (auth-config.ts).
 */

export const MAX_RULES = 100;

/**
 * A QoS as the API's schema reads it (`qos: array(emqx_schema:qos())`), numbers or their text:
 * EMQX's own API examples send `["1"]`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth_mnesia/src/emqx_authz_api_mnesia.erl
 * `fields(rule_item)`, https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/include/emqx_authz.hrl
 * `?USERNAME_RULES_EXAMPLE`).
 */
const Qos = z.union([z.literal(0), z.literal(1), z.literal(2), z.enum(['0', '1', '2']).transform((q) => Number(q) as 0 | 1 | 2)]);

export const AclRuleInput = z.strictObject({
  topic: z.string().min(1, 'must not be empty'),
  permission: z.enum(['allow', 'deny']),
  action: z.enum(['publish', 'subscribe', 'all']),
  qos: z.union([Qos.transform((q) => [q]), z.array(Qos)]).optional(),
  /** `union([all, boolean()])`: `true`/`false` as booleans or text, or `all`. */
  retain: z.union([z.boolean(), z.literal('all'), z.enum(['true', 'false']).transform((r) => r === 'true')]).optional(),
});

/** A rule as stored and returned by the API: `qos` and `retain` filled with their defaults. */
export interface AclRule {
  topic: string;
  permission: 'allow' | 'deny';
  action: 'publish' | 'subscribe' | 'all';
  qos: (0 | 1 | 2)[];
  retain: boolean | 'all';
}

export function normalizeRule(input: z.infer<typeof AclRuleInput>): AclRule {
  return {
    topic: input.topic,
    permission: input.permission,
    action: input.action,
    qos: input.qos ?? [0, 1, 2],
    retain: input.retain ?? 'all',
  };
}

export interface AuthzSubject {
  clientid: string;
  username: string | undefined;
}

export interface AuthzRequest {
  action: 'publish' | 'subscribe';
  /** The topic name for publish, the topic filter for subscribe. */
  topic: string;
  qos: number;
  retain?: boolean;
}

export type AuthzDecision = 'allow' | 'deny' | 'nomatch';

/** Who a set of rules belongs to: a client id or a username. */
export type RuleOwner = 'clientid' | 'username';

/** The rules of one kind of owner, keyed by the owner's client id or username. */
export class OwnerRules {
  private readonly byName = new Map<string, AclRule[]>();

  /** Every owner with its rules, sorted by name. */
  list(): [string, AclRule[]][] {
    return [...this.byName.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  get(name: string): AclRule[] | undefined {
    return this.byName.get(name);
  }

  set(name: string, rules: AclRule[]): void {
    this.byName.set(name, rules);
  }

  delete(name: string): boolean {
    return this.byName.delete(name);
  }

  clear(): void {
    this.byName.clear();
  }
}

export class AclRuleStore {
  private readonly owners: Record<RuleOwner, OwnerRules> = { clientid: new OwnerRules(), username: new OwnerRules() };
  private forAll: AclRule[] = [];

  of(owner: RuleOwner): OwnerRules {
    return this.owners[owner];
  }

  getAllRules(): AclRule[] {
    return this.forAll;
  }

  setAllRules(rules: AclRule[]): void {
    this.forAll = rules;
  }

  clear(): void {
    this.owners.clientid.clear();
    this.owners.username.clear();
    this.forAll = [];
  }

  /** First match over client rules, then user rules, then the rules for all. */
  check(subject: AuthzSubject, request: AuthzRequest): AuthzDecision {
    const candidates = [
      ...(this.owners.clientid.get(subject.clientid) ?? []),
      ...(subject.username !== undefined ? (this.owners.username.get(subject.username) ?? []) : []),
      ...this.forAll,
    ];
    const match = candidates.find((rule) => ruleMatches(rule, subject, request));
    return match ? match.permission : 'nomatch';
  }
}

function ruleMatches(rule: AclRule, subject: AuthzSubject, request: AuthzRequest): boolean {
  if (rule.action !== 'all' && rule.action !== request.action) return false;
  if (!rule.qos.includes(request.qos as 0 | 1 | 2)) return false;
  if (request.action === 'publish' && rule.retain !== 'all' && rule.retain !== (request.retain ?? false)) return false;
  return ruleTopicMatches(rule.topic, subject, request.topic);
}

/** `eq <filter>` matches literally and is not rendered; otherwise placeholders, then wildcards. */
function ruleTopicMatches(ruleTopic: string, subject: AuthzSubject, topic: string): boolean {
  if (ruleTopic.startsWith('eq ')) return topic === ruleTopic.slice(3);
  const rendered = renderPlaceholders(ruleTopic, subject);
  return rendered !== undefined && topicMatchesFilter(topic, rendered);
}

/**
 * `${clientid}` and `${username}`. A rule naming `${username}` cannot match a client that has
 * no username (EMQX renders nothing useful for it either).
 */
function renderPlaceholders(ruleTopic: string, subject: AuthzSubject): string | undefined {
  if (ruleTopic.includes('${username}') && subject.username === undefined) return undefined;
  return ruleTopic.replaceAll('${clientid}', subject.clientid).replaceAll('${username}', subject.username ?? '');
}
