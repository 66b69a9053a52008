/**
 * Shapes of EMQX 5 answers, declared once; the types are derived. Objects are loose: EMQX adds fields between
 * versions and EMQX Cloud adds its own (docs/emqx-compatibility.md), so only what we rely on is checked.
 * Field names are EMQX's own (snake_case). Each section names the EMQX module that produces the answers,
 * as a path under https://github.com/emqx/emqx/tree/v5.8.9/apps.
 */
import { z } from 'zod';

// ---- pagination (emqx_management/src/emqx_mgmt_api.erl) ----

export const PageMeta = z.looseObject({
  page: z.number().optional(),
  limit: z.number().optional(),
  /** Absent with `like_*` filters; never used to decide whether to continue. */
  count: z.number().optional(),
  hasnext: z.boolean(),
});
export type PageMeta = z.infer<typeof PageMeta>;

export function pageOf<T extends z.ZodType>(item: T) {
  return z.object({ data: z.array(item), meta: PageMeta });
}
export interface Page<T> {
  data: T[];
  meta: PageMeta;
}

// ---- authentication users (emqx_auth/src/emqx_authn/emqx_authn_api.erl) ----

export const AuthUser = z.looseObject({
  user_id: z.string(),
  is_superuser: z.boolean().default(false),
});
export type AuthUser = z.infer<typeof AuthUser>;

/** `import_users` counts, returned by 5.8.2+ (older versions answer 204). */
export const ImportUsersCounts = z.looseObject({
  total: z.number(),
  success: z.number(),
  override: z.number(),
  skipped: z.number(),
  failed: z.number(),
});
export type ImportUsersCounts = z.infer<typeof ImportUsersCounts>;

// ---- authorization rules (emqx_auth_mnesia/src/emqx_authz_api_mnesia.erl) ----

export const AclPermission = z.enum(['allow', 'deny']);
export const AclAction = z.enum(['publish', 'subscribe', 'all']);

export const AclRule = z.looseObject({
  topic: z.string(),
  permission: AclPermission,
  action: AclAction,
  qos: z.array(z.number()).optional(),
  retain: z.union([z.boolean(), z.literal('all')]).optional(),
});
export type AclRule = z.infer<typeof AclRule>;

export const ClientAclRules = z.looseObject({ clientid: z.string(), rules: z.array(AclRule) });
export type ClientAclRules = z.infer<typeof ClientAclRules>;

export const UsernameAclRules = z.looseObject({ username: z.string(), rules: z.array(AclRule) });
export type UsernameAclRules = z.infer<typeof UsernameAclRules>;

export const GlobalAclRules = z.looseObject({ rules: z.array(AclRule) });

// ---- clients and subscriptions (emqx_management/src/emqx_mgmt_api_clients.erl) ----

/**
 * EMQX sets every field it has no value for to `null` (`result_format_undefined_to_null/1` in
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_clients.erl):
 * an offline persistent session has no `ip_address`, `port` or `connected_at`, and may have no
 * `node`; a durable session missing its metadata is listed as `{"clientid": ...}` alone. So every
 * field but `clientid` may be null or absent, and only `connected === true` means "online".
 */
export const ClientInfo = z.looseObject({
  clientid: z.string(),
  /** `null` when the client sent no username. */
  username: z.string().nullish(),
  node: z.string().nullish(),
  connected: z.boolean().nullish(),
  connected_at: z.string().nullish(),
  disconnected_at: z.string().nullish(),
  created_at: z.string().nullish(),
  ip_address: z.string().nullish(),
  port: z.number().nullish(),
  proto_name: z.string().nullish(),
  proto_ver: z.number().nullish(),
  keepalive: z.number().nullish(),
  clean_start: z.boolean().nullish(),
  expiry_interval: z.number().nullish(),
  is_persistent: z.boolean().nullish(),
  subscriptions_cnt: z.number().nullish(),
  mqueue_len: z.number().nullish(),
  inflight_cnt: z.number().nullish(),
  recv_msg: z.number().nullish(),
  send_msg: z.number().nullish(),
  recv_oct: z.number().nullish(),
  send_oct: z.number().nullish(),
  recv_pkt: z.number().nullish(),
  send_pkt: z.number().nullish(),
});
export type ClientInfo = z.infer<typeof ClientInfo>;

export const Subscription = z.looseObject({
  topic: z.string(),
  qos: z.number(),
  clientid: z.string().optional(),
  // `null` or `"all"` for durable sessions (emqx_mgmt_api_subscriptions.erl `format/2`, `convert_null/1`).
  node: z.string().nullish(),
  nl: z.number().optional(),
  rap: z.number().optional(),
  rh: z.number().optional(),
  durable: z.boolean().optional(),
});
export type Subscription = z.infer<typeof Subscription>;

/**
 * `POST /clients/{id}/subscribe/bulk` answers 200 in two forms (emqx_mgmt_util:batch_operation/3,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_util.erl): a plain list
 * of subscriptions when every topic succeeded, else `{succeed, failed}`, where each failure carries
 * the arguments of the call that failed, `[ClientID, Topic, {qos, nl, rap, rh}]`, and the reason as
 * Erlang prints it (`~p`), e.g. `channel_not_found` or `invalid_subopts_nl`.
 */
export const SubscribeBulkFailure = z.looseObject({
  data: z.tuple([z.string(), z.string()], z.unknown()),
  reason: z.unknown(),
});
export type SubscribeBulkFailure = z.infer<typeof SubscribeBulkFailure>;

export const SubscribeBulkBody = z.union([
  z.array(Subscription),
  z.looseObject({
    succeed: z.array(Subscription).default([]),
    failed: z.array(SubscribeBulkFailure).default([]),
  }),
]);

// ---- publish (emqx_management/src/emqx_mgmt_api_publish.erl) ----

export const PublishAccepted = z.looseObject({ id: z.string() });
/** 202 (`reason_code` 16, no subscriber), 400 and 503 bodies of `/publish`. */
export const PublishReason = z.looseObject({ reason_code: z.number(), message: z.string().default('') });

// ---- stats, metrics, nodes, status (emqx_management/src/emqx_mgmt_api_{stats,metrics,nodes,status}.erl) ----

function numericFields(record: Record<string, unknown>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(record)) {
    if (typeof value === 'number') out[key] = value;
  }
  return out;
}

/** Counter name → value, e.g. `{"live_connections.count": 3, "messages.received": 10}`. */
export const Counters = z.record(z.string(), z.unknown()).transform(numericFields);
export type Counters = z.infer<typeof Counters>;

export const NodeCounters = z
  .looseObject({ node: z.string() })
  .transform(({ node, ...rest }) => ({ node, counters: numericFields(rest) }));
export type NodeCounters = z.infer<typeof NodeCounters>;

export const NodeInfo = z.looseObject({
  node: z.string(),
  node_status: z.string().optional(),
  version: z.string().optional(),
  edition: z.string().optional(),
  role: z.string().optional(),
  uptime: z.number().optional(),
  connections: z.number().optional(),
  live_connections: z.number().optional(),
});
export type NodeInfo = z.infer<typeof NodeInfo>;

export const StatusJson = z.looseObject({
  rel_vsn: z.string().optional(),
  node_name: z.string().optional(),
  broker_status: z.string().optional(),
  app_status: z.string().optional(),
});

// ---- connectors, actions, rules (emqx_connector/src/emqx_connector_api.erl,
// emqx_bridge/src/emqx_bridge_v2_api.erl, emqx_rule_engine/src/emqx_rule_engine_api.erl) ----

export const Connector = z.looseObject({
  type: z.string(),
  name: z.string(),
  enable: z.boolean().optional(),
  status: z.string().optional(),
});
export type Connector = z.infer<typeof Connector>;

export const Action = z.looseObject({
  type: z.string(),
  name: z.string(),
  connector: z.string().optional(),
  enable: z.boolean().optional(),
  status: z.string().optional(),
});
export type Action = z.infer<typeof Action>;

export const Rule = z.looseObject({
  id: z.string(),
  sql: z.string().optional(),
  actions: z.array(z.unknown()).optional(),
  enable: z.boolean().optional(),
  description: z.string().optional(),
});
export type Rule = z.infer<typeof Rule>;
