/**
 * Publish/subscribe ACL: built-in-database authorization rules (5.1+ paths,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth_mnesia/src/emqx_authz_api_mnesia.erl), and the
 * per-client authorization cache that must be cleared for a rule change to reach a connected client.
 */
import { falseIfNotFound, nullIfNotFound } from './errors';
import { apiPath, type CallOptions, type EmqxHttp } from './http';
import { AclListQuery, AclRuleInput, AclTarget, NonEmpty } from './inputs';
import { paginate, type PaginateOptions } from './pagination';
import { parseInput, parseMaybeWrapped } from './parse';
import { ClientAclRules, GlobalAclRules, UsernameAclRules, type AclRule } from './schemas';

const RULES = '/authorization/sources/built_in_database/rules';

type ParsedTarget = { clientid: string } | { username: string } | 'all';

function targetPath(target: ParsedTarget): string {
  if (target === 'all') return `${RULES}/all`;
  if ('clientid' in target) return `${RULES}${apiPath`/clients/${target.clientid}`}`;
  return `${RULES}${apiPath`/users/${target.username}`}`;
}

/** The target's rules, or `null` when it has none (404). Rules for `'all'` are `[]` when unset. */
export async function getAclRules(http: EmqxHttp, target: AclTarget, opts: CallOptions = {}): Promise<AclRule[] | null> {
  const parsed = parseInput(AclTarget, target, 'target');
  const path = targetPath(parsed);
  const at = { method: 'GET', path } as const;
  const schema = parsed === 'all' ? GlobalAclRules : 'clientid' in parsed ? ClientAclRules : UsernameAclRules;
  return nullIfNotFound(
    http.request({ method: 'GET', path, signal: opts.signal }).then((res) => parseMaybeWrapped(schema, res, at).rules),
  );
}

/**
 * Replaces the target's whole rule list; creates it when absent. Idempotent, unlike POST, which
 * answers 409 when the client already has rules.
 */
export async function putAclRules(http: EmqxHttp, target: AclTarget, rules: readonly AclRuleInput[], opts: CallOptions = {}): Promise<void> {
  const parsed = parseInput(AclTarget, target, 'target');
  const list = parseInput(AclRuleInput.array(), rules, 'rules');
  const path = targetPath(parsed);
  if (parsed === 'all') {
    await http.request({ method: 'POST', path, body: { rules: list }, signal: opts.signal });
    return;
  }
  await http.request({ method: 'PUT', path, body: { ...parsed, rules: list }, signal: opts.signal });
}

/** Deletes the target's rules; `false` when there were none (404 means done). */
export async function deleteAclRules(http: EmqxHttp, target: AclTarget, opts: CallOptions = {}): Promise<boolean> {
  const path = targetPath(parseInput(AclTarget, target, 'target'));
  return falseIfNotFound(http.request({ method: 'DELETE', path, signal: opts.signal }));
}

export type AclRuleSets = { clients: ClientAclRules; users: UsernameAclRules };
export type AclFilter = Omit<AclListQuery, 'page' | 'limit'>;

const listSchema = { clients: ClientAclRules, users: UsernameAclRules } as const;

export function iterateAclRules<K extends keyof AclRuleSets>(
  http: EmqxHttp,
  kind: K,
  filter: AclFilter = {},
  opts: PaginateOptions = {},
): AsyncGenerator<AclRuleSets[K], void, undefined> {
  return paginate(http, `${RULES}/${kind}`, parseInput(AclListQuery, filter, 'filter'), listSchema[kind], opts) as AsyncGenerator<
    AclRuleSets[K],
    void,
    undefined
  >;
}

export interface ClearCacheOptions extends CallOptions {
  /** Treat 404 `CLIENTID_NOT_FOUND` (client not connected, so nothing cached) as done. */
  ignoreNotFound?: boolean;
}

/** Clears one client's authorization cache; `false` when the client was not found and that is ignored. */
export async function clearAuthzCache(http: EmqxHttp, clientid: string, opts: ClearCacheOptions = {}): Promise<boolean> {
  const path = apiPath`/clients/${parseInput(NonEmpty, clientid, 'clientid')}/authorization/cache`;
  const request = http.request({ method: 'DELETE', path, signal: opts.signal });
  if (opts.ignoreNotFound) return falseIfNotFound(request);
  await request;
  return true;
}

/** Clears the authorization cache of every client on every node. */
export async function clearAllAuthzCache(http: EmqxHttp, opts: CallOptions = {}): Promise<void> {
  await http.request({ method: 'DELETE', path: '/authorization/cache', signal: opts.signal });
}
