import type { AclRule, Subscription } from './schemas/device';
import { effectiveAcl, identifierProblem } from './device';

/**
 * EMQX's authorization matching for a device's own rules, as pure functions (workflow-safe), so
 * the project can enforce what EMQX does not: subscriptions made through the REST API skip
 * authorization (`handle_info({subscribe, ...})` goes straight to `post_process_subscribe`,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_channel.erl), so every desired
 * subscription is checked here, at input time.
 *
 * Semantics follow https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authz/emqx_authz_rule.erl
 * (`matches/4`, `match_topics/3`, `match_topic/2`, `compile_topic/1`) and
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_topic.erl (`match/2`):
 * - rules are tried in order and the first match decides;
 * - `eq <topic>` matches that exact text (no wildcards, no placeholders);
 * - otherwise `${clientid}` and `${username}` are filled in, and the requested filter must match
 *   the rule's filter word by word: `+` takes any one word (a `+` or `#` of the request too),
 *   a last `#` takes the rest, and a first word starting with `$` never matches `+` or `#`;
 * - a shared subscription is checked by its real topic (`$share/g/t` as `t`,
 *   `emqx_topic:get_shared_real_topic/1`).
 */

export interface DeviceIdentity {
  clientId: string;
  username: string;
}

const KNOWN_PLACEHOLDER = /\$\{(clientid|username)\}/g;
const ANY_PLACEHOLDER = /\$\{[^}]*\}/;

/**
 * The rule topic EMQX should hold for this device: `${clientid}` and `${username}` filled with the
 * device's validated identifiers (see identifierProblem), `eq` topics untouched (EMQX never fills
 * those). The MQTT username is not authenticated when passwords are keyed by client id, so EMQX
 * must never fill `${username}` from what a client claims.
 */
export function renderAclTopic(topic: string, identity: DeviceIdentity): string {
  if (topic.startsWith('eq ')) return topic;
  return topic.replace(KNOWN_PLACEHOLDER, (_, name: string) => (name === 'clientid' ? identity.clientId : identity.username));
}

/** The rules written to EMQX for a device: its own rules, rendered, then the final deny. */
export function renderedAcl(rules: AclRule[], identity: DeviceIdentity): AclRule[] {
  return effectiveAcl(rules).map((rule) => ({ ...rule, topic: renderAclTopic(rule.topic, identity) }));
}

/** `emqx_topic:get_shared_real_topic/1`: the filter a shared subscription is authorized by. */
export function realTopicOf(filter: string): string {
  const shared = /^\$share\/[^/]+\/(.*)$/s.exec(filter);
  if (shared) return shared[1] as string;
  if (filter.startsWith('$queue/')) return filter.slice('$queue/'.length);
  return filter;
}

/** `emqx_topic:match/2` on words: does `name` (a topic or a filter) fall under `filter`? */
export function topicMatches(name: string, filter: string): boolean {
  const nameWords = name.split('/');
  const filterWords = filter.split('/');
  if ((nameWords[0] ?? '').startsWith('$') && (filterWords[0] === '+' || filterWords[0] === '#')) return false;
  for (let i = 0; i < filterWords.length; i++) {
    const word = filterWords[i] as string;
    if (word === '#' && i === filterWords.length - 1) return true;
    if (i >= nameWords.length) return false;
    if (word !== '+' && word !== nameWords[i]) return false;
  }
  return nameWords.length === filterWords.length;
}

export type RuleMatch = 'match' | 'no-match' | 'unknown';

/** Whether one rule's topic condition matches the requested topic; `unknown` when it uses a placeholder only known at connect time. */
function topicCondition(ruleTopic: string, requested: string, identity: DeviceIdentity): RuleMatch {
  if (ruleTopic.startsWith('eq ')) return requested === ruleTopic.slice(3) ? 'match' : 'no-match';
  const rendered = renderAclTopic(ruleTopic, identity);
  if (ANY_PLACEHOLDER.test(rendered)) return 'unknown';
  return topicMatches(requested, rendered) ? 'match' : 'no-match';
}

export type SubscriptionDecision =
  | { allowed: true; ruleIndex: number }
  | { allowed: false; ruleIndex: number | null; uncertain?: true };

/**
 * What a device's effective rules (its own, then the final deny) decide for subscribing to
 * `filter`. A rule whose topic needs a placeholder only EMQX knows at connect time (e.g.
 * `${cert_common_name}`) cannot allow at input time; as a deny it counts as denying (uncertain).
 * With no matching rule the answer is "not allowed": EMQX's `no_match` setting is not relied on.
 */
export function decideSubscription(rules: AclRule[], identity: DeviceIdentity, filter: string): SubscriptionDecision {
  const effective = effectiveAcl(rules);
  const requested = realTopicOf(filter);
  for (let i = 0; i < effective.length; i++) {
    const rule = effective[i] as AclRule;
    if (rule.action === 'publish') continue;
    const matched = topicCondition(rule.topic, requested, identity);
    if (matched === 'no-match') continue;
    if (matched === 'unknown') {
      if (rule.permission === 'deny') return { allowed: false, ruleIndex: i, uncertain: true };
      continue;
    }
    return rule.permission === 'allow' ? { allowed: true, ruleIndex: i } : { allowed: false, ruleIndex: i };
  }
  return { allowed: false, ruleIndex: null };
}

function ruleText(rule: AclRule): string {
  return `${rule.permission} ${rule.action} ${rule.topic}`;
}

/**
 * One message per desired subscription the device's rules do not allow, naming the topic, the rule
 * that denies it (or that none allows it) and the fix. Empty when every subscription is allowed.
 */
export function subscriptionProblems(rules: AclRule[], identity: DeviceIdentity, subscriptions: Subscription[]): string[] {
  const problems: string[] = [];
  for (const { topic } of subscriptions) {
    const decision = decideSubscription(rules, identity, topic);
    if (decision.allowed) continue;
    const fix = 'add an ACL rule that allows subscribing to it, or drop the subscription';
    if (decision.ruleIndex === null) {
      problems.push(`subscription "${topic}": no ACL rule allows it (EMQX does not check subscriptions made through its REST API); ${fix}`);
    } else if (decision.ruleIndex === rules.length) {
      problems.push(`subscription "${topic}": no ACL rule of the device allows it, so the final rule "deny all #" denies it; ${fix}`);
    } else {
      const rule = rules[decision.ruleIndex] as AclRule;
      const how = decision.uncertain ? 'may be denied' : 'is denied';
      problems.push(`subscription "${topic}" ${how} by ACL rule ${decision.ruleIndex + 1} "${ruleText(rule)}" (the first rule that matches decides); ${fix}`);
    }
  }
  return problems;
}

/**
 * Everything wrong with a device's identity, rules and desired subscriptions, checked together
 * (workflow-safe: the client checks first, the workflow again before it writes anything).
 */
export function deviceInputProblems(input: { clientId: string; username?: string; acl: AclRule[]; subscriptions: Subscription[] }): string[] {
  const problems: string[] = [];
  const clientIdProblem = identifierProblem(input.clientId);
  if (clientIdProblem) problems.push(`clientId: ${clientIdProblem}`);
  const usernameProblem = input.username === undefined ? null : identifierProblem(input.username);
  if (usernameProblem) problems.push(`username: ${usernameProblem}`);
  if (problems.length > 0) return problems;
  const identity = { clientId: input.clientId, username: input.username ?? input.clientId };
  return subscriptionProblems(input.acl, identity, input.subscriptions);
}
