import { z } from 'zod';
import type { AclRuleStore, AuthzRequest, AuthzSubject } from './acl';
import { topicMatchesFilter } from './topic';
import { DEFAULT_PASSWORD_HASH, PasswordHashAlgorithm, type AuthnUserStore } from './users';

/**
 * The broker's authentication chain and authorization configuration, as EMQX 5.8's REST API
 * manages them. A stock EMQX starts with `authentication = []` (every client is let in) and
 * `authorization.sources = [file]` with `no_match = allow`; `device-ops emqx setup` adds the
 * built-in database authenticator and authorization source and sets `no_match = deny`.
 */

export const AUTHENTICATOR_ID = 'password_based:built_in_database';

/**
 * The built-in database authenticator's configuration
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth_mnesia/src/emqx_authn_mnesia_schema.erl):
 * `user_id_type` defaults to username, the algorithm to sha256 with a prefix salt.
 */
export const AuthenticatorConfig = z.strictObject({
  id: z.string().optional(),
  mechanism: z.literal('password_based'),
  backend: z.literal('built_in_database'),
  user_id_type: z.enum(['clientid', 'username']).default('username'),
  password_hash_algorithm: PasswordHashAlgorithm.default(DEFAULT_PASSWORD_HASH),
  enable: z.boolean().default(true),
  bootstrap_file: z.string().optional(),
  bootstrap_type: z.enum(['hash', 'plain']).optional(),
});
export type AuthenticatorConfig = z.infer<typeof AuthenticatorConfig>;

/** The global authentication chain: at most the one built-in database authenticator here. */
export class AuthenticationChain {
  /** EMQX creates the global chain with its first authenticator and keeps it after deletes. */
  chainExists = false;
  private current: AuthenticatorConfig | undefined;

  constructor(private readonly users: AuthnUserStore) {}

  get authenticator(): AuthenticatorConfig | undefined {
    return this.current;
  }

  /** The authenticator as the API shows it, with its id. */
  view(): Record<string, unknown> | undefined {
    if (!this.current) return undefined;
    const { id: _ignored, ...config } = this.current;
    return { id: AUTHENTICATOR_ID, ...config };
  }

  set(config: AuthenticatorConfig): void {
    this.current = config;
    this.chainExists = true;
    this.users.algorithm = config.password_hash_algorithm;
  }

  remove(): void {
    this.current = undefined;
    this.users.clear();
  }

  /** True when CONNECTs are checked: an enabled authenticator is in the chain. */
  get enforcing(): boolean {
    return this.current?.enable === true;
  }
}

const Duration = z.string().regex(/^\d+(ms|s|m|h|d)?$/, 'must be a duration such as 1m');

/** `authorization` minus `sources` (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_schema.erl authz_fields/0). */
export const AuthzSettings = z.strictObject({
  no_match: z.enum(['allow', 'deny']).default('allow'),
  deny_action: z.enum(['ignore', 'disconnect']).default('ignore'),
  cache: z
    .strictObject({
      enable: z.boolean().default(true),
      max_size: z.int().min(1).max(1_048_576).default(32),
      ttl: Duration.default('1m'),
      excludes: z.array(z.string()).default([]),
    })
    .default({ enable: true, max_size: 32, ttl: '1m', excludes: [] }),
});
export type AuthzSettings = z.infer<typeof AuthzSettings>;

/**
 * EMQX's stock `etc/acl.conf` (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/etc/acl.conf),
 * the only file source content the dev broker models: note the last rule, `{allow, all}`, which
 * makes `no_match` unreachable while the file source is enabled.
 */
export const STOCK_ACL_CONF = [
  '{allow, {username, {re, "^dashboard$"}}, subscribe, ["$SYS/#"]}.',
  '{allow, {ipaddr, "127.0.0.1"}, all, ["$SYS/#", "#"]}.',
  '{deny, all, subscribe, ["$SYS/#", {eq, "#"}, {eq, "+/#"}]}.',
  '{allow, all}.',
].join('\n');

const BuiltInDatabaseSource = z.strictObject({
  type: z.literal('built_in_database'),
  enable: z.boolean().default(true),
  max_rules: z.int().min(1).default(100),
});
const FileSource = z.strictObject({
  type: z.literal('file'),
  enable: z.boolean().default(true),
  path: z.string().optional(),
  rules: z
    .string()
    .refine((text) => text.replace(/\s+/g, '') === STOCK_ACL_CONF.replace(/\s+/g, ''), 'the dev broker only models the stock acl.conf')
    .optional(),
});
export const AuthzSource = z.discriminatedUnion('type', [BuiltInDatabaseSource, FileSource], {
  error: 'type: the dev broker models the built_in_database and file sources only',
});
export type AuthzSource = z.infer<typeof AuthzSource>;

export type AuthzDecisionSource = 'allow' | 'deny' | 'nomatch';

/** Who asks, with the peer address the file source's `ipaddr` rule looks at. */
export interface AuthzCaller extends AuthzSubject {
  peerhost: string;
}

export class AuthorizationConfig {
  settings: AuthzSettings = AuthzSettings.parse({});
  sources: AuthzSource[] = [{ type: 'file', enable: true, path: '${EMQX_ETC_DIR}/acl.conf' }];

  constructor(private readonly acl: AclRuleStore) {}

  source(type: string): AuthzSource | undefined {
    return this.sources.find((s) => s.type === type);
  }

  /** Sources in order, the first that decides wins; otherwise `no_match` (emqx_authz:authorize/5). */
  decide(caller: AuthzCaller, request: AuthzRequest): 'allow' | 'deny' {
    for (const source of this.sources) {
      if (!source.enable) continue;
      const decision = source.type === 'built_in_database' ? this.acl.check(caller, request) : stockFileRules(caller, request);
      if (decision !== 'nomatch') return decision;
    }
    return this.settings.no_match;
  }

  /** Deleting the built-in database source purges its rules (emqx_authz_mnesia:destroy/1). */
  remove(type: string): void {
    this.sources = this.sources.filter((s) => s.type !== type);
    if (type === 'built_in_database') this.acl.clear();
  }
}

function stockFileRules(caller: AuthzCaller, request: AuthzRequest): AuthzDecisionSource {
  const { topic, action } = request;
  if (action === 'subscribe' && caller.username === 'dashboard' && topicMatchesFilter(topic, '$SYS/#')) return 'allow';
  // The ipaddr rule names topic filters: a subscription matches one it equals or is covered by.
  if (caller.peerhost === '127.0.0.1' && (topicMatchesFilter(topic, '$SYS/#') || topicMatchesFilter(topic, '#'))) return 'allow';
  if (action === 'subscribe' && (topicMatchesFilter(topic, '$SYS/#') || topic === '#' || topic === '+/#')) return 'deny';
  return 'allow';
}
