/**
 * `EmqxClient`: the one EMQX 5 REST client of the project. Each method delegates to the module of its
 * area, where the EMQX behaviour it relies on is documented; this file only binds them to a transport.
 *
 * Every method takes an optional last `{ signal }`. Failures are typed (errors.ts): retry on
 * `isRetryable(err)`, treat the rest as final.
 */
import { z } from 'zod';
import * as access from './access-control';
import * as acl from './acl';
import * as clients from './clients';
import { ensureEventWebhook, type EventWebhookResult, type EventWebhookSpec } from './event-webhook';
import { EmqxHttp, type CallOptions, type EmqxTransportOptions, type Query } from './http';
import type {
  AclRuleInput,
  AclTarget,
  ClientListQuery,
  ConnectorInput,
  HashedUserEntry,
  NewUser,
  PageQuery,
  PlainUserEntry,
  PublishMessage,
  SubscribeOptions,
  UserListQuery,
  UserUpdate,
} from './inputs';
import * as integrations from './integrations';
import * as monitoring from './monitoring';
import { collect, paginate, type PaginateOptions } from './pagination';
import * as publishing from './publish';
import type { AclRule, Action, AuthUser, ClientInfo, Connector, Counters, NodeCounters, NodeInfo, Page, Rule, Subscription } from './schemas';
import * as users from './users';

export type EmqxClientOptions = EmqxTransportOptions;

export class EmqxClient {
  readonly #http: EmqxHttp;

  constructor(opts: EmqxClientOptions) {
    this.#http = new EmqxHttp(opts);
  }

  /** Closes the connection pool; in-flight requests finish first. */
  close(): Promise<void> {
    return this.#http.close();
  }

  /**
   * Yields every item of any paginated list endpoint (`path` below the base URL, encoded with
   * `apiPath`), validating each with `item` when given.
   */
  paginate(path: string, query?: Query): AsyncGenerator<unknown, void, undefined>;
  paginate<S extends z.ZodType>(path: string, query: Query, item: S, opts?: PaginateOptions): AsyncGenerator<z.output<S>, void, undefined>;
  paginate(path: string, query: Query = {}, item: z.ZodType = z.unknown(), opts?: PaginateOptions): AsyncGenerator<unknown, void, undefined> {
    return paginate(this.#http, path, query, item, opts);
  }

  // ---- device credentials (authentication users) ----

  listUsers(query?: UserListQuery, opts?: CallOptions): Promise<Page<AuthUser>> {
    return users.listUsers(this.#http, query, opts);
  }
  listAllUsers(filter?: users.UserFilter, opts?: PaginateOptions): Promise<AuthUser[]> {
    return collect(users.iterateUsers(this.#http, filter, opts));
  }
  getUser(userId: string, opts?: CallOptions): Promise<AuthUser | null> {
    return users.getUser(this.#http, userId, opts);
  }
  createUser(user: NewUser, opts?: CallOptions): Promise<AuthUser> {
    return users.createUser(this.#http, user, opts);
  }
  updateUser(userId: string, update: UserUpdate, opts?: CallOptions): Promise<void> {
    return users.updateUser(this.#http, userId, update, opts);
  }
  deleteUser(userId: string, opts?: CallOptions): Promise<void> {
    return users.deleteUser(this.#http, userId, opts);
  }
  upsertUser(user: NewUser, opts?: CallOptions): Promise<'created' | 'updated'> {
    return users.upsertUser(this.#http, user, opts);
  }
  deleteUserIfExists(userId: string, opts?: CallOptions): Promise<boolean> {
    return users.deleteUserIfExists(this.#http, userId, opts);
  }
  importUsers(type: 'plain', entries: readonly PlainUserEntry[], opts?: CallOptions): Promise<users.ImportUsersResult>;
  importUsers(type: 'hash', entries: readonly HashedUserEntry[], opts?: CallOptions): Promise<users.ImportUsersResult>;
  importUsers(
    type: 'plain' | 'hash',
    entries: readonly PlainUserEntry[] | readonly HashedUserEntry[],
    opts?: CallOptions,
  ): Promise<users.ImportUsersResult> {
    return type === 'plain'
      ? users.importUsers(this.#http, type, entries as readonly PlainUserEntry[], opts)
      : users.importUsers(this.#http, type, entries as readonly HashedUserEntry[], opts);
  }

  // ---- ACL (authorization rules) ----

  getAclRules(target: AclTarget, opts?: CallOptions): Promise<AclRule[] | null> {
    return acl.getAclRules(this.#http, target, opts);
  }
  putAclRules(target: AclTarget, rules: readonly AclRuleInput[], opts?: CallOptions): Promise<void> {
    return acl.putAclRules(this.#http, target, rules, opts);
  }
  deleteAclRules(target: AclTarget, opts?: CallOptions): Promise<boolean> {
    return acl.deleteAclRules(this.#http, target, opts);
  }
  listAllAclRules<K extends keyof acl.AclRuleSets>(kind: K, filter?: acl.AclFilter, opts?: PaginateOptions): Promise<acl.AclRuleSets[K][]> {
    return collect(acl.iterateAclRules(this.#http, kind, filter, opts));
  }
  clearAuthzCache(clientid: string, opts?: acl.ClearCacheOptions): Promise<boolean> {
    return acl.clearAuthzCache(this.#http, clientid, opts);
  }
  clearAllAuthzCache(opts?: CallOptions): Promise<void> {
    return acl.clearAllAuthzCache(this.#http, opts);
  }

  // ---- authenticator, authorization sources and settings ----

  getAuthenticator(opts?: CallOptions): Promise<access.Authenticator | null> {
    return access.getAuthenticator(this.#http, opts);
  }
  getAuthzSettings(opts?: CallOptions): Promise<access.AuthzSettings> {
    return access.getAuthzSettings(this.#http, opts);
  }
  putAuthzSettings(settings: access.AuthzSettings, opts?: CallOptions): Promise<void> {
    return access.putAuthzSettings(this.#http, settings, opts);
  }
  listAuthzSources(opts?: CallOptions): Promise<access.AuthzSource[]> {
    return access.listAuthzSources(this.#http, opts);
  }
  /** Creates the authenticator, authorization source and no_match the project needs; idempotent. */
  ensureAccessControl(opts?: access.AccessControlOptions): Promise<access.AccessControlSetup> {
    return access.ensureAccessControl(this.#http, opts);
  }

  // ---- clients, kick, proxy subscriptions ----

  listClients(query?: ClientListQuery, opts?: CallOptions): Promise<Page<ClientInfo>> {
    return clients.listClients(this.#http, query, opts);
  }
  iterateClients(filter?: clients.ClientFilter, opts?: PaginateOptions): AsyncGenerator<ClientInfo, void, undefined> {
    return clients.iterateClients(this.#http, filter, opts);
  }
  listAllClients(filter?: clients.ClientFilter, opts?: PaginateOptions): Promise<ClientInfo[]> {
    return collect(this.iterateClients(filter, opts));
  }
  getClient(clientid: string, opts?: CallOptions): Promise<ClientInfo | null> {
    return clients.getClient(this.#http, clientid, opts);
  }
  kickClient(clientid: string, opts?: CallOptions): Promise<boolean> {
    return clients.kickClient(this.#http, clientid, opts);
  }
  kickClients(clientids: readonly string[], opts?: CallOptions): Promise<void> {
    return clients.kickClients(this.#http, clientids, opts);
  }
  getClientSubscriptions(clientid: string, opts?: CallOptions): Promise<Subscription[] | null> {
    return clients.getClientSubscriptions(this.#http, clientid, opts);
  }
  subscribe(clientid: string, subscription: SubscribeOptions, opts?: CallOptions): Promise<Subscription> {
    return clients.subscribe(this.#http, clientid, subscription, opts);
  }
  subscribeBulk(clientid: string, subscriptions: readonly SubscribeOptions[], opts?: CallOptions): Promise<clients.SubscribeBulkResult> {
    return clients.subscribeBulk(this.#http, clientid, subscriptions, opts);
  }
  unsubscribe(clientid: string, topic: string, opts?: CallOptions): Promise<void> {
    return clients.unsubscribe(this.#http, clientid, topic, opts);
  }
  unsubscribeBulk(clientid: string, topics: readonly string[], opts?: CallOptions): Promise<void> {
    return clients.unsubscribeBulk(this.#http, clientid, topics, opts);
  }

  // ---- publish ----

  publish(message: PublishMessage, opts?: CallOptions): Promise<publishing.PublishOutcome> {
    return publishing.publish(this.#http, message, opts);
  }
  publishBulk(messages: readonly PublishMessage[], opts?: CallOptions): Promise<publishing.PublishOutcome[]> {
    return publishing.publishBulk(this.#http, messages, opts);
  }

  // ---- statistics, metrics, nodes, health ----

  getStats(opts?: CallOptions): Promise<Counters> {
    return monitoring.getStats(this.#http, opts);
  }
  getNodeStats(opts?: CallOptions): Promise<NodeCounters[]> {
    return monitoring.getNodeStats(this.#http, opts);
  }
  getMetrics(opts?: CallOptions): Promise<Counters> {
    return monitoring.getMetrics(this.#http, opts);
  }
  getNodeMetrics(opts?: CallOptions): Promise<NodeCounters[]> {
    return monitoring.getNodeMetrics(this.#http, opts);
  }
  listNodes(opts?: CallOptions): Promise<NodeInfo[]> {
    return monitoring.listNodes(this.#http, opts);
  }
  status(opts?: CallOptions): Promise<monitoring.BrokerStatus> {
    return monitoring.getStatus(this.#http, opts);
  }

  // ---- connectors, actions, rules ----

  listConnectors(opts?: CallOptions): Promise<Connector[]> {
    return integrations.listConnectors(this.#http, opts);
  }
  getConnector(type: string, name: string, opts?: CallOptions): Promise<Connector | null> {
    return integrations.getConnector(this.#http, type, name, opts);
  }
  deleteConnector(type: string, name: string, opts?: CallOptions): Promise<boolean> {
    return integrations.deleteConnector(this.#http, type, name, opts);
  }
  upsertConnector(connector: ConnectorInput, opts?: CallOptions): Promise<integrations.UpsertResult> {
    return integrations.upsertConnector(this.#http, connector, opts);
  }

  listActions(opts?: CallOptions): Promise<Action[]> {
    return integrations.listActions(this.#http, opts);
  }
  getAction(type: string, name: string, opts?: CallOptions): Promise<Action | null> {
    return integrations.getAction(this.#http, type, name, opts);
  }
  deleteAction(type: string, name: string, opts?: CallOptions): Promise<boolean> {
    return integrations.deleteAction(this.#http, type, name, opts);
  }

  listRules(query?: PageQuery, opts?: CallOptions): Promise<Page<Rule>> {
    return integrations.listRules(this.#http, query, opts);
  }
  listAllRules(opts?: PaginateOptions): Promise<Rule[]> {
    return collect(integrations.iterateRules(this.#http, opts));
  }
  getRule(id: string, opts?: CallOptions): Promise<Rule | null> {
    return integrations.getRule(this.#http, id, opts);
  }
  deleteRule(id: string, opts?: CallOptions): Promise<boolean> {
    return integrations.deleteRule(this.#http, id, opts);
  }

  /** Upserts the connector, action and rule that send device events to the webhook adapter. */
  ensureEventWebhook(spec: EventWebhookSpec, opts?: CallOptions): Promise<EventWebhookResult> {
    return ensureEventWebhook(this.#http, spec, opts);
  }
}

export function createEmqxClient(opts: EmqxClientOptions): EmqxClient {
  return new EmqxClient(opts);
}

/** Builds the client from the `emqx` section of the configuration (src/config.ts). */
export function createEmqxClientFromConfig(emqx: {
  EMQX_API_URL: string;
  EMQX_API_KEY: string;
  EMQX_API_SECRET: string;
  EMQX_REQUEST_TIMEOUT: number;
}): EmqxClient {
  return new EmqxClient({ baseUrl: emqx.EMQX_API_URL, apiKey: emqx.EMQX_API_KEY, apiSecret: emqx.EMQX_API_SECRET, timeoutMs: emqx.EMQX_REQUEST_TIMEOUT });
}
