import { z } from 'zod';
import { CONTROL_CHARS, identifierProblem } from '../device';
import { issueText } from '../input-error';

/**
 * Device-administration shapes, declared once and shared by the starter (which validates at the
 * boundary) and activities; workflow code imports ../device.ts and types only.
 */

export * from '../device';

/**
 * A string that can reach an MQTT topic (see identifierProblem): client ids, usernames, campaign
 * template values. One rule for all of them.
 */
export const Identifier = z.string({ error: 'must be a string' }).superRefine((value, ctx) => {
  const problem = identifierProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

export const ClientId = Identifier;
export type ClientId = z.infer<typeof ClientId>;

export const Username = Identifier;

export const Password = z
  .string()
  .min(8, 'must be at least 8 characters')
  .max(256, 'must be at most 256 characters')
  .refine((v) => !CONTROL_CHARS.test(v), 'must not contain control characters');

export const Qos = z.union([z.literal(0), z.literal(1), z.literal(2)], { error: 'must be 0, 1 or 2' });

function topicLevelsValid(topic: string, allowWildcards: boolean): boolean {
  const levels = topic.split('/');
  return levels.every((level, i) => {
    if (!allowWildcards) return !level.includes('+') && !level.includes('#');
    if (level.includes('#')) return level === '#' && i === levels.length - 1;
    if (level.includes('+')) return level === '+';
    return true;
  });
}

/** A topic filter: wildcards allowed where MQTT allows them; `${clientid}`/`${username}` placeholders pass through. */
export const TopicFilter = z
  .string()
  .min(1, 'must not be empty')
  .max(1024, 'must be at most 1024 characters')
  .refine((v) => !CONTROL_CHARS.test(v), 'must not contain control characters')
  .refine((v) => topicLevelsValid(v.replace(/^eq /, ''), true), 'wildcards must fill a whole level; "#" only last');

/**
 * What is wrong with a topic name to publish to (no wildcards), or null. A plain function as well
 * as the schema below: campaigns check every rendered topic, 100,000 at a time.
 */
export function topicNameProblem(topic: string): string | null {
  if (topic.length === 0) return 'must not be empty';
  if (topic.length > 1024) return 'must be at most 1024 characters';
  if (CONTROL_CHARS.test(topic)) return 'must not contain control characters';
  if (topic.includes('+') || topic.includes('#')) return 'must not contain wildcards ("+" or "#")';
  return null;
}

/** A topic name to publish to: no wildcards. */
export const TopicName = z.string().superRefine((v, ctx) => {
  const problem = topicNameProblem(v);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

export const AclRule = z.object({
  permission: z.enum(['allow', 'deny']),
  action: z.enum(['publish', 'subscribe', 'all']),
  topic: TopicFilter,
});
export type AclRule = z.infer<typeof AclRule>;

export const Subscription = z.object({ topic: TopicFilter, qos: Qos.default(0) });
export type Subscription = z.infer<typeof Subscription>;

/** Parses the CLI form `"<allow|deny> <publish|subscribe|all> <topic>"`. */
export function parseAclRule(text: string): AclRule {
  const match = /^\s*(\S+)\s+(\S+)\s+(\S.*?)\s*$/.exec(text);
  if (!match) throw new Error(`ACL rule "${text}": expected "<allow|deny> <publish|subscribe|all> <topic>"`);
  const [, permission, action, topic] = match;
  const parsed = AclRule.safeParse({ permission, action, topic });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`ACL rule "${text}": ${issue?.path.join('.') ?? 'rule'} ${issue ? issueText(issue, { permission, action, topic }) : 'is invalid'}`);
  }
  return parsed.data;
}

/** Parses the CLI form `"<topic>[:qos]"`. */
export function parseSubscription(text: string): Subscription {
  const match = /^(.*?)(?::([0-9]+))?$/.exec(text.trim());
  const topic = match?.[1] ?? '';
  const qos = match?.[2] === undefined ? 0 : Number(match[2]);
  const parsed = Subscription.safeParse({ topic, qos });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`subscription "${text}": ${issue?.path.join('.') ?? 'topic'} ${issue ? issueText(issue, { topic, qos }) : 'is invalid'}`);
  }
  return parsed.data;
}

/** A device's own alarm policy; what it leaves out comes from the worker's ALARM_* settings. */
export const AlarmPolicy = z.object({
  graceMs: z.number().int().min(0).max(30 * 86_400_000).optional(),
  escalationMs: z.array(z.number().int().min(1_000).max(30 * 86_400_000)).max(10).optional(),
  /** Flapping detection for this device (default: ALARM_FLAP_THRESHOLD, ALARM_FLAP_WINDOW). */
  flapThreshold: z.number().int().min(2).max(1_000).optional(),
  flapWindowMs: z.number().int().min(1_000).max(86_400_000).optional(),
});
export type AlarmPolicy = z.infer<typeof AlarmPolicy>;

export const ProvisionInput = z
  .object({
    clientId: ClientId,
    username: Username.optional(),
    password: Password.optional(),
    generatePassword: z.boolean().default(false),
    acl: z.array(AclRule).max(99, 'at most 99 rules (EMQX keeps 100 per client, one is the final deny)').default([]),
    subscriptions: z.array(Subscription).max(100).default([]),
    alarmPolicy: AlarmPolicy.optional(),
    tags: z.array(z.string().min(1).max(64)).max(32).default([]),
  })
  .refine((v) => (v.password !== undefined) !== v.generatePassword, {
    message: 'give exactly one of password or generatePassword',
    path: ['password'],
  });
export type ProvisionInput = z.output<typeof ProvisionInput>;


/** The non-secret state of a device as this project records it. */
export interface DeviceRecord {
  clientId: string;
  username: string;
  acl: AclRule[];
  subscriptions: Subscription[];
  alarmPolicy?: AlarmPolicy;
  tags: string[];
  /**
   * `deprovisioning` while a deprovision runs; `deprovisioning-failed` when it stopped part way
   * (see `failure`): its credentials may already be gone, its ACL may remain.
   */
  status: 'active' | 'deprovisioning' | 'deprovisioning-failed' | 'deprovisioned';
  provisionedAt: string;
  updatedAt: string;
  credentialsRotatedAt?: string;
  /** The step an operation stopped at, and why (no secrets). */
  failure?: { operation: 'deprovision'; step: DeprovisionStep; error: string; at: string };
}

/** The steps of a deprovision, in order: the device loses its credentials before its session and its ACL. */
export type DeprovisionStep = 'mark-record' | 'remove-credentials' | 'kick' | 'remove-acl' | 'save-record';
