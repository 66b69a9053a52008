import type { Aedes, AuthenticateError, Client, PublishPacket } from 'aedes';
import type { AuthzRequest } from './acl';
import type { AuthenticationChain, AuthorizationConfig } from './auth-config';
import { isProxySubscription } from './client-control';
import type { BrokerMetrics } from './metrics';
import { answerNoMatchingSubscribers, MQTT_V5, type AedesWithPersistence } from './mqtt5';
import type { SessionRegistry } from './sessions';
import { isSystemTopic } from './topic';
import type { AuthnUserStore } from './users';

/**
 * Authentication and authorization on the MQTT side, as EMQX does them: CONNECT checked against
 * the built-in database users when that authenticator is in the chain (anyone is let in when the
 * chain is empty, as on a stock EMQX; refusals are CONNACK 4/5, MQTT 5's 0x86/0x87); PUBLISH and
 * SUBSCRIBE checked against the authorization sources in order, then `no_match` (superusers skip
 * them). A denied PUBLISH is dropped without disconnecting (`deny_action = ignore`): MQTT 3.1.1
 * QoS 1/2 still acknowledged, MQTT 5 with PUBACK/PUBREC 0x87; a denied SUBSCRIBE gets SUBACK
 * 0x80, MQTT 5's 0x87 (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_channel.erl
 * `process_publish/2`, `handle_out(suback, ...)`). An MQTT 5 QoS 1/2 PUBLISH that no subscription
 * matches is acknowledged with reason code 16 (mqtt5.ts).
 */

export interface AccessControlOptions {
  users: AuthnUserStore;
  authentication: AuthenticationChain;
  authorization: AuthorizationConfig;
  sessions: SessionRegistry;
  metrics: BrokerMetrics;
}

/** CONNACK return codes (MQTT 3.1.1 section 3.2.2.3). */
const BAD_USERNAME_OR_PASSWORD = 4;
const NOT_AUTHORIZED = 5;

type PublishFn = (packet: PublishPacket, client: Client | null | ((err?: Error) => void), done?: (err?: Error) => void) => void;

export function installAccessControl(aedes: Aedes, options: AccessControlOptions): void {
  const { users, sessions, metrics } = options;
  const deniedPublishes = new WeakSet<PublishPacket>();

  aedes.preConnect = (client, packet, callback) => {
    sessions.noteConnectPacket(client, packet);
    metrics.inc('client.connect');
    callback(null, true);
  };

  aedes.authenticate = (client, username, password, callback) => {
    metrics.inc('client.authenticate');
    const refuse = (returnCode: number, message: string): void => {
      metrics.inc('authentication.failure');
      const error = new Error(message) as AuthenticateError;
      error.returnCode = returnCode;
      callback(error, false);
    };
    const accept = (isSuperuser: boolean): void => {
      metrics.inc('authentication.success');
      sessions.noteAuthenticated(client, isSuperuser);
      noteSessionTakeover(client);
      callback(null, true);
    };
    const authenticator = options.authentication.authenticator;
    if (!authenticator?.enable) {
      metrics.inc('authentication.success.anonymous');
      return accept(false);
    }
    // emqx_authn_mnesia:authenticate/2: no password is a bad password; then the user id is the
    // client id or the username, as `user_id_type` says. With `clientid`, a device's credentials
    // only ever let in its own client id, whatever username it gives.
    if (password === undefined) return refuse(BAD_USERNAME_OR_PASSWORD, 'bad username or password');
    const userId = authenticator.user_id_type === 'clientid' ? client.id : username;
    if (userId === undefined || userId === '') return refuse(NOT_AUTHORIZED, 'not authorized');
    const check = users.checkPassword(userId, password);
    if (check.result === 'ok') return accept(check.isSuperuser);
    // An unknown user makes the built-in database authenticator "ignore" the client, and the end
    // of the chain answers not_authorized (emqx_authn_chains:do_authenticate/3).
    return refuse(check.result === 'not_found' ? NOT_AUTHORIZED : BAD_USERNAME_OR_PASSWORD, 'bad username or password');
  };

  /**
   * A new connection with the client id of a live one ends the old connection: `discarded` when
   * it starts clean, `takenover` when it resumes the session (emqx_cm:open_session/3).
   */
  function noteSessionTakeover(client: Client): void {
    const previous = sessions.get(client.id);
    if (!previous || previous.client === client) return;
    const reason = sessions.cleanStartOf(client) ? 'discarded' : 'takenover';
    sessions.markDisconnectReason(client.id, reason);
    metrics.inc(reason === 'discarded' ? 'session.discarded' : 'session.takenover');
  }

  function authorize(client: Client, request: AuthzRequest): boolean {
    metrics.inc('client.authorize');
    const subject = sessions.subjectOf(client);
    if (subject.isSuperuser) {
      metrics.inc('authorization.superuser');
      return true;
    }
    const allowed = options.authorization.decide({ ...subject, peerhost: peerhostOf(client) }, request) === 'allow';
    metrics.inc(allowed ? 'authorization.allow' : 'authorization.deny');
    return allowed;
  }

  aedes.authorizePublish = (client, packet, callback) => {
    // Wills re-published by aedes at startup carry no client; nothing to check against.
    if (!client) return callback(null);
    if (!client.closed) countReceived(client, packet);
    const allowed =
      !isSystemTopic(packet.topic) &&
      authorize(client, { action: 'publish', topic: packet.topic, qos: packet.qos, retain: packet.retain });
    if (!allowed) {
      metrics.inc('packets.publish.auth_error');
      // aedes answers an MQTT 5 client's denied QoS 1/2 PUBLISH with 0x87 and drops it, keeping the connection.
      if (client.version === MQTT_V5) return callback(new Error('not authorized'));
      deniedPublishes.add(packet);
    } else if (client.version === MQTT_V5 && packet.qos > 0 && !sessions.hasSubscriberFor(packet.topic)) {
      answerNoMatchingSubscribers(aedes as unknown as AedesWithPersistence, client, packet, (p) => routeAsync(p, client));
    }
    callback(null);
  };

  aedes.authorizeSubscribe = (client, subscription, callback) => {
    // REST subscriptions on a client's behalf are not authorized in EMQX (client-control.ts).
    if (isProxySubscription(subscription)) return callback(null, subscription);
    const allowed = authorize(client, { action: 'subscribe', topic: subscription.topic, qos: subscription.qos });
    callback(null, allowed ? subscription : null);
  };

  aedes.authorizeForward = (client, packet) => {
    metrics.inc('messages.sent');
    metrics.inc(qosMetric(packet.qos, 'sent'));
    const session = sessions.of(client);
    if (session) session.sendMsg++;
    return packet;
  };

  // aedes closes the connection when authorizePublish reports an error; EMQX drops the message and
  // keeps the client. So a denied packet is let through the hook and skipped here, where aedes
  // hands it on for routing (after the PUBACK/PUBREC has been written).
  const routePublish = aedes.publish.bind(aedes) as PublishFn;
  const publishUnlessDenied: PublishFn = (packet, client, done) => {
    if (deniedPublishes.delete(packet)) {
      const callback = typeof client === 'function' ? client : done;
      callback?.();
      return;
    }
    routePublish(packet, client, done);
  };
  (aedes as unknown as { publish: PublishFn }).publish = publishUnlessDenied;
  const routeAsync = (packet: PublishPacket, client: Client): Promise<void> =>
    new Promise((resolve, reject) => routePublish(packet, client, (err) => (err ? reject(err) : resolve())));

  function countReceived(client: Client, packet: PublishPacket): void {
    metrics.inc('messages.received');
    metrics.inc(qosMetric(packet.qos, 'received'));
    const session = sessions.of(client);
    if (session) session.recvMsg++;
  }
}

/** The client's IP address, IPv4-mapped addresses unmapped, as EMQX's `peerhost`. */
function peerhostOf(client: Client): string {
  const address = (client as unknown as { connDetails?: { ipAddress?: string } }).connDetails?.ipAddress ?? '';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

function qosMetric(qos: number, direction: 'received' | 'sent'): `messages.qos${0 | 1 | 2}.${'received' | 'sent'}` {
  const level = qos === 2 ? 2 : qos === 1 ? 1 : 0;
  return `messages.qos${level}.${direction}`;
}
