import { Aedes } from 'aedes';
import { createServer } from 'aedes-server-factory';
import type { EventEmitter } from 'node:events';
import pino, { type Logger } from 'pino';
import { createEmqxClient } from '../../src/emqx';
import { AclRuleStore } from './acl';
import { AuthenticationChain, AuthorizationConfig } from './auth-config';
import { buildApiServer } from './api/server';
import { FaultSwitchboard, NO_FAULTS, type FaultConfig } from './faults';
import { bindListener, PortInUseError, type BoundListener } from './listeners';
import { BrokerMetrics, MessageRateSampler } from './metrics';
import { installAccessControl } from './mqtt-access';
import { followBrokerEvents } from './mqtt-events';
import { discardPersistedSession, keepAedesQueueForConnectedClients } from './offline-sessions';
import { MessagePublisher } from './publish';
import { RuleEngine } from './rule-engine/rule-engine';
import type { ActionMetrics, AnswerTimes } from './rule-engine/webhook-delivery';
import { DEFAULT_QUEUE_SETTINGS, SessionRegistry } from './sessions';
import { BrokerStats, countClientTraffic } from './stats';
import { AuthnUserStore } from './users';

/**
 * An EMQX-compatible broker for development and tests: a real MQTT broker (aedes) plus the subset
 * of the EMQX 5 REST API the project uses (docs/emqx-compatibility.md), so the project runs and is
 * tested without EMQX.
 *
 * Limits, on purpose:
 * - MQTT 3.1, 3.1.1 and 5 (aedes 2): reason codes, session expiry, properties and the MQTT 5
 *   fields of rule-engine events as EMQX has them; what is left out:
 *   docs/emqx-compatibility-sessions.md.
 * - One node (`emqx@127.0.0.1`); no clustering, shared subscriptions, bridges or TLS. What else
 *   is and is not modelled, endpoint by endpoint: docs/emqx-compatibility.md.
 * - Offline persistent sessions (`clean_session=false`, kept for EMQX's default 2 hours, or an
 *   MQTT 5 Session Expiry Interval) are listed with `connected: false`, queue what their
 *   subscriptions match, and are subscribed and unsubscribed through the REST API like connected
 *   clients. What is and is not modelled: docs/emqx-compatibility-sessions.md.
 * - State lives in memory and is lost on close.
 * - Authentication: the built-in database authenticator only (simple hashes and pbkdf2, no
 *   bcrypt); authorization: the built_in_database source and the stock `file` source (EMQX's
 *   default acl.conf, nothing else); `deny_action = disconnect` is stored but not applied.
 */

export type { FaultConfig } from './faults';
export { faultsFromEnv } from './faults';
export { PortInUseError } from './listeners';

/** The dev stack's well-known REST API key and secret (local use only; `npm run dev` and `npm run broker`). */
export const DEV_API_KEY = 'device-ops-dev';
export const DEV_API_SECRET = 'device-ops-dev-secret';
export type { ActionMetrics, AnswerTimes } from './rule-engine/webhook-delivery';

export interface BrokerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** 0 = pick a free port (default 0). */
  mqttPort?: number;
  /** MQTT over WebSocket (path /mqtt accepted); 0 = free port. */
  wsPort?: number;
  /** REST API; 0 = free port. */
  apiPort?: number;
  apiKey: string;
  apiSecret: string;
  /**
   * Start like a stock EMQX 5.8: no authenticator (every client is let in), authorization
   * sources `[file]` with EMQX's default acl.conf, `no_match = allow`. Default false: the broker
   * then configures itself with the code `device-ops emqx setup` runs (src/emqx/access-control.ts):
   * the built-in database authenticator keyed by client id (sha256, prefix salt), the
   * built_in_database source first, the file source disabled, and `no_match` below.
   */
  stock?: boolean;
  /**
   * `authorization.no_match` the setup leaves (not used with `stock`). Default 'allow', because
   * many tests connect clients that have no rules; `npm run dev` and `npm run broker` pass 'deny',
   * what `emqx setup` sets.
   */
  authzNoMatch?: 'allow' | 'deny';
  /** Default true; false removes the authenticator after the setup (anonymous clients allowed). */
  authenticationEnabled?: boolean;
  /** `mqtt.max_mqueue_len` of offline sessions; default 1000 like EMQX, 0 = no limit. */
  maxMqueueLen?: number;
  /** `mqtt.mqueue_store_qos0`; default true like EMQX. */
  mqueueStoreQos0?: boolean;
  faults?: Partial<FaultConfig>;
  /** Optional; default silent. */
  logger?: Logger;
}

export interface RunningBroker {
  host: string;
  mqttPort: number;
  wsPort: number;
  apiPort: number;
  /** mqtt://127.0.0.1:<port> */
  mqttUrl: string;
  /** ws://127.0.0.1:<port>/mqtt */
  wsUrl: string;
  /** http://127.0.0.1:<port>/api/v5 */
  apiUrl: string;
  faults: { get(): FaultConfig; set(patch: Partial<FaultConfig>): void; reset(): void };
  /** Webhook delivery counters per HTTP action id (`http:<name>`), as `GET /actions/{id}/metrics` reports them. */
  webhookMetrics(): Record<string, ActionMetrics>;
  /** How fast the receiver answered each HTTP action's requests, from request on the wire to response (benchmarks). */
  webhookAnswerTimes(): Record<string, AnswerTimes>;
  /** Closes every listener and client and stops webhook delivery; idempotent. */
  close(): Promise<void>;
}

export async function startBroker(opts: BrokerOptions): Promise<RunningBroker> {
  const host = opts.host ?? '127.0.0.1';
  const logger = opts.logger ?? pino({ level: 'silent' });
  const faults = new FaultSwitchboard(opts.faults ?? {});
  const metrics = new BrokerMetrics();
  const queueSettings = {
    maxMqueueLen: opts.maxMqueueLen ?? DEFAULT_QUEUE_SETTINGS.maxMqueueLen,
    storeQos0: opts.mqueueStoreQos0 ?? DEFAULT_QUEUE_SETTINGS.storeQos0,
  };
  // EMQX's `mqtt.max_topic_alias` default; aedes' own default (0) refuses MQTT 5 topic aliases.
  const aedes = await Aedes.createBroker({ topicAliasMaximum: 65_535 });
  const sessions = new SessionRegistry(queueSettings, (expired) => {
    metrics.inc('session.terminated');
    discardPersistedSession(aedes, expired.clientid).catch((err: unknown) => logger.warn({ err }, 'could not discard an expired session'));
  });
  const users = new AuthnUserStore();
  const acl = new AclRuleStore();
  const authentication = new AuthenticationChain(users);
  const authorization = new AuthorizationConfig(acl);
  const stats = new BrokerStats(sessions);
  const ruleEngine = new RuleEngine({ faults, logger: logger.child({ component: 'rule-engine' }) });

  const brokerEvents: EventEmitter = aedes;
  keepAedesQueueForConnectedClients(aedes);
  brokerEvents.on('error', (err: Error) => logger.error({ err }, 'mqtt broker error'));
  const publisher = new MessagePublisher(aedes, sessions);
  installAccessControl(aedes, { users, authentication, authorization, sessions, metrics });
  followBrokerEvents(aedes, { sessions, metrics, stats, ruleEngine, publisher });
  countClientTraffic(aedes);
  const rates = new MessageRateSampler(metrics);

  const api = buildApiServer(
    { aedes, sessions, users, acl, authentication, authorization, metrics, stats, rates, publisher, ruleEngine, faults, startedAt: Date.now() },
    { apiKey: opts.apiKey, apiSecret: opts.apiSecret, logger: logger.child({ component: 'api' }) },
  );

  const listeners: BoundListener[] = [];
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= shutDown();
    return closing;
  };
  const shutDown = async (): Promise<void> => {
    ruleEngine.stop();
    rates.stop();
    sessions.clearOffline();
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await Promise.all(listeners.map((l) => l.close()));
    await api.close();
    await ruleEngine.close();
  };

  try {
    const mqtt = await bindListener(createServer(aedes), host, opts.mqttPort ?? 0);
    listeners.push(mqtt);
    const ws = await bindListener(createServer(aedes, { ws: true }), host, opts.wsPort ?? 0);
    listeners.push(ws);
    const apiPort = await listenApi(api, host, opts.apiPort ?? 0);
    const apiUrl = `http://${host}:${apiPort}/api/v5`;
    if (!opts.stock) {
      // The configured faults apply to the project's calls, not to the broker's own setup.
      faults.set(NO_FAULTS);
      await setUpAccessControl(apiUrl, opts);
      faults.reset();
      if (opts.authenticationEnabled === false) authentication.remove();
    }
    logger.info({ mqttPort: mqtt.port, wsPort: ws.port, apiPort, stock: opts.stock ?? false }, 'EMQX-compatible dev broker started');
    return {
      host,
      mqttPort: mqtt.port,
      wsPort: ws.port,
      apiPort,
      mqttUrl: `mqtt://${host}:${mqtt.port}`,
      wsUrl: `ws://${host}:${ws.port}/mqtt`,
      apiUrl,
      faults: { get: () => faults.get(), set: (patch) => faults.set(patch), reset: () => faults.reset() },
      webhookMetrics: () => ruleEngine.deliveryStats(),
      webhookAnswerTimes: () => Object.fromEntries(ruleEngine.resources.listActions().map((a) => [`http:${a.name}`, ruleEngine.actionAnswerTimes(a.name)])),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** What `device-ops emqx setup` does to the access control, through the broker's own REST API. */
async function setUpAccessControl(apiUrl: string, opts: BrokerOptions): Promise<void> {
  const emqx = createEmqxClient({ baseUrl: apiUrl, apiKey: opts.apiKey, apiSecret: opts.apiSecret });
  try {
    await emqx.ensureAccessControl({ noMatch: opts.authzNoMatch ?? 'allow', disableFileSource: true });
  } finally {
    await emqx.close();
  }
}

async function listenApi(api: ReturnType<typeof buildApiServer>, host: string, port: number): Promise<number> {
  try {
    await api.listen({ host, port });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new PortInUseError(port);
    throw err;
  }
  const address = api.server.address();
  return typeof address === 'object' && address ? address.port : port;
}
