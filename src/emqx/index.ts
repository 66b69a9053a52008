/** The EMQX 5 REST client: `createEmqxClient(...)`, its typed errors, and the shapes it returns. */
export { createEmqxClient, createEmqxClientFromConfig, EmqxClient, type EmqxClientOptions } from './client';
export {
  EmqxBadRequestError,
  EmqxConflictError,
  EmqxError,
  EmqxInputError,
  EmqxNotConfiguredError,
  EmqxNotFoundError,
  EmqxResponseError,
  EmqxUnauthorizedError,
  EmqxUnavailableError,
  isRetryable,
  nonRetryableEmqxErrorTypes,
  type HttpMethod,
} from './errors';
export { apiPath, DEFAULT_CONNECTIONS, DEFAULT_TIMEOUT_MS, type CallOptions, type Query } from './http';
export type { AclFilter, AclRuleSets, ClearCacheOptions } from './acl';
export {
  AUTHENTICATOR_ID,
  AuthenticatorMismatchError,
  authenticatorProblems,
  PASSWORD_HASH,
  PROJECT_AUTHENTICATOR,
  type AccessControlOptions,
  type AccessControlSetup,
  type Authenticator,
  type AuthzSettings,
  type AuthzSource,
} from './access-control';
export type { ClientFilter, SubscribeBulkResult, SubscribeFailure } from './clients';
export { DEFAULT_EVENT_TOPICS, repliesPath, type EventWebhookResult, type EventWebhookSpec } from './event-webhook';
export type { UpsertResult } from './integrations';
export type { BrokerStatus } from './monitoring';
export type { PaginateOptions } from './pagination';
export type { PublishOutcome } from './publish';
export { type ImportUsersResult, type UserFilter } from './users';
export type {
  AclListQuery,
  AclRuleInput,
  AclTarget,
  ActionInput,
  ClientListQuery,
  ConnectorInput,
  HashedUserEntry,
  NewUser,
  PageQuery,
  PlainUserEntry,
  PublishMessage,
  PublishProperties,
  RuleInput,
  SubscribeOptions,
  UserListQuery,
  UserUpdate,
} from './inputs';
export type {
  AclRule,
  Action,
  AuthUser,
  ClientAclRules,
  ClientInfo,
  Connector,
  Counters,
  ImportUsersCounts,
  NodeCounters,
  NodeInfo,
  Page,
  PageMeta,
  Rule,
  Subscription,
  UsernameAclRules,
} from './schemas';
