/**
 * What callers may pass to the client, checked before anything is sent. Objects are strict so a
 * misspelt field is reported instead of silently dropped. Field names are EMQX's own.
 */
import { z } from 'zod';
import { AclAction, AclPermission } from './schemas';

export const NonEmpty = z.string().min(1, 'must be a non-empty string');

const Qos = z.literal([0, 1, 2], 'must be 0, 1 or 2');
const Flag = z.literal([0, 1], 'must be 0 or 1');
const PageNumber = z.int().min(1).optional();
const PageLimit = z.int().min(1).max(10_000).optional();

// ---- authentication users ----

export const NewUser = z.strictObject({
  user_id: NonEmpty,
  password: NonEmpty,
  is_superuser: z.boolean().optional(),
});
export type NewUser = z.input<typeof NewUser>;

/**
 * EMQX's spec makes `password` required on update
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authn/emqx_authn_api.erl,
 * `request_user_update`), so it is required here too.
 */
export const UserUpdate = z.strictObject({ password: NonEmpty, is_superuser: z.boolean().optional() });
export type UserUpdate = z.input<typeof UserUpdate>;

export const PlainUserEntry = NewUser;
export type PlainUserEntry = NewUser;

export const HashedUserEntry = z.strictObject({
  user_id: NonEmpty,
  password_hash: NonEmpty,
  salt: z.string().optional(),
  is_superuser: z.boolean().optional(),
});
export type HashedUserEntry = z.input<typeof HashedUserEntry>;

export const UserListQuery = z.strictObject({
  page: PageNumber,
  limit: PageLimit,
  like_user_id: z.string().optional(),
  is_superuser: z.boolean().optional(),
});
export type UserListQuery = z.input<typeof UserListQuery>;

// ---- authorization rules ----

export const AclRuleInput = z.strictObject({
  topic: NonEmpty,
  permission: AclPermission,
  action: AclAction,
  qos: z.array(Qos).optional(),
  retain: z.union([z.boolean(), z.literal('all')]).optional(),
});
export type AclRuleInput = z.input<typeof AclRuleInput>;

/** Whose rules: one client id, one username, or the rules for everyone (`'all'`). */
export const AclTarget = z.union([
  z.strictObject({ clientid: NonEmpty }),
  z.strictObject({ username: NonEmpty }),
  z.literal('all'),
]);
export type AclTarget = z.input<typeof AclTarget>;

export const AclListQuery = z.strictObject({
  page: PageNumber,
  limit: PageLimit,
  like_clientid: z.string().optional(),
  like_username: z.string().optional(),
});
export type AclListQuery = z.input<typeof AclListQuery>;

// ---- clients and subscriptions ----

const OneOrMany = z.union([NonEmpty, z.array(NonEmpty)]);

export const ClientListQuery = z.strictObject({
  page: PageNumber,
  limit: PageLimit,
  node: z.string().optional(),
  /** Repeatable from 5.6: `clientid=a&clientid=b`. */
  clientid: OneOrMany.optional(),
  username: OneOrMany.optional(),
  ip_address: z.string().optional(),
  conn_state: z.enum(['connected', 'idle', 'disconnected']).optional(),
  clean_start: z.boolean().optional(),
  proto_ver: z.string().optional(),
  like_clientid: z.string().optional(),
  like_username: z.string().optional(),
  gte_created_at: z.union([z.string(), z.number()]).optional(),
  lte_created_at: z.union([z.string(), z.number()]).optional(),
  gte_connected_at: z.union([z.string(), z.number()]).optional(),
  lte_connected_at: z.union([z.string(), z.number()]).optional(),
});
export type ClientListQuery = z.input<typeof ClientListQuery>;

export const SubscribeOptions = z.strictObject({
  topic: NonEmpty,
  qos: Qos.optional(),
  /** No Local (MQTT 5); not allowed on `$share/...` topics. */
  nl: Flag.optional(),
  /** Retain As Published. */
  rap: Flag.optional(),
  /** Retain Handling. */
  rh: Qos.optional(),
});
export type SubscribeOptions = z.input<typeof SubscribeOptions>;

// ---- publish ----

const TopicName = NonEmpty.refine((t) => !/[+#]/.test(t), 'must be a topic name without wildcards');

export const PublishProperties = z.strictObject({
  payload_format_indicator: Flag.optional(),
  message_expiry_interval: z.int().min(0).optional(),
  response_topic: z.string().optional(),
  correlation_data: z.string().optional(),
  user_properties: z.record(z.string(), z.string()).optional(),
  content_type: z.string().optional(),
});
export type PublishProperties = z.input<typeof PublishProperties>;

export const PublishMessage = z.strictObject({
  topic: TopicName,
  /** Text, or bytes (sent base64-encoded). */
  payload: z.union([z.string(), z.instanceof(Uint8Array)]),
  /** `base64` when `payload` is a base64 string; set automatically for bytes. */
  payload_encoding: z.enum(['plain', 'base64']).optional(),
  qos: Qos.optional(),
  retain: z.boolean().optional(),
  properties: PublishProperties.optional(),
});
export type PublishMessage = z.input<typeof PublishMessage>;

// ---- connectors, actions, rules: EMQX validates the rest of the body ----

export const ConnectorInput = z.looseObject({ type: NonEmpty, name: NonEmpty });
export type ConnectorInput = z.input<typeof ConnectorInput>;

export const ActionInput = z.looseObject({ type: NonEmpty, name: NonEmpty, connector: NonEmpty });
export type ActionInput = z.input<typeof ActionInput>;

export const RuleInput = z.looseObject({ id: NonEmpty, sql: NonEmpty, actions: z.array(z.unknown()).optional() });
export type RuleInput = z.input<typeof RuleInput>;

export const PageQuery = z.strictObject({ page: PageNumber, limit: PageLimit });
export type PageQuery = z.input<typeof PageQuery>;
