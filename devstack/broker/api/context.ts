import type { Aedes } from 'aedes';
import type { AclRuleStore } from '../acl';
import type { AuthenticationChain, AuthorizationConfig } from '../auth-config';
import type { FaultSwitchboard } from '../faults';
import type { BrokerMetrics, MessageRateSampler } from '../metrics';
import type { MessagePublisher } from '../publish';
import type { RuleEngine } from '../rule-engine/rule-engine';
import type { SessionRegistry } from '../sessions';
import type { BrokerStats } from '../stats';
import type { AuthnUserStore } from '../users';

/** What the REST routes work on: the broker's stores and services. */
export interface ApiContext {
  aedes: Aedes;
  sessions: SessionRegistry;
  users: AuthnUserStore;
  authentication: AuthenticationChain;
  authorization: AuthorizationConfig;
  acl: AclRuleStore;
  metrics: BrokerMetrics;
  stats: BrokerStats;
  rates: MessageRateSampler;
  publisher: MessagePublisher;
  ruleEngine: RuleEngine;
  faults: FaultSwitchboard;
  startedAt: number;
}
