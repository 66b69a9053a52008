import { ApplicationFailure } from '@temporalio/activity';
import { EmqxNotFoundError, type EmqxClient } from '../emqx';
import type { History } from '../store';
import type { AclRule, DeviceRecord, PasswordHash, Subscription } from '../domain/schemas/device';
import { asActivityFailure, emqxStep } from './failures';
import { tellContinuousCampaignsOf } from './campaign-join';

/**
 * Single-device steps. Each is idempotent: a create that meets an existing object updates it, a
 * delete that meets nothing is done, and MongoDB writes are keyed upserts.
 */
export function createDeviceAdminActivities(deps: { emqx: EmqxClient; history: History }) {
  const { emqx, history } = deps;

  async function importHash(clientId: string, hash: PasswordHash): Promise<void> {
    const counts = await emqxStep(() => emqx.importUsers('hash', [{ user_id: clientId, password_hash: hash.passwordHash, salt: hash.salt }]));
    if (counts.failed > 0) throw ApplicationFailure.nonRetryable(`EMQX did not import the credentials of ${clientId}`, 'CredentialsNotImported');
  }

  return {
    /**
     * Stores the device's password hash under its client id (`user_id_type = clientid`: the
     * password only ever works for this client id). `import_users?type=hash` overwrites an
     * existing user (`import_users/2` passes `override => true`,
     * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth_mnesia/src/emqx_authn_mnesia.erl),
     * which makes it both create and replace.
     */
    async importCredentialHash(input: { clientId: string; hash: PasswordHash }): Promise<{ created: boolean }> {
      const existed = (await emqxStep(() => emqx.getUser(input.clientId))) !== null;
      await importHash(input.clientId, input.hash);
      return { created: !existed };
    },

    /** Replaces the password hash of an existing user; a device EMQX does not know is not provisioned. */
    async replaceCredentialHash(input: { clientId: string; hash: PasswordHash }): Promise<void> {
      if ((await emqxStep(() => emqx.getUser(input.clientId))) === null) {
        throw ApplicationFailure.nonRetryable(`EMQX has no credentials for ${input.clientId}`, 'DeviceNotProvisioned');
      }
      await importHash(input.clientId, input.hash);
    },

    async removeCredentials(input: { clientId: string }): Promise<{ existed: boolean }> {
      return { existed: await emqxStep(() => emqx.deleteUserIfExists(input.clientId)) };
    },

    async readAcl(input: { clientId: string }): Promise<AclRule[] | null> {
      const rules = await emqxStep(() => emqx.getAclRules({ clientid: input.clientId }));
      if (!rules) return null;
      return rules.map((r) => ({ permission: r.permission, action: r.action, topic: r.topic }));
    },

    /** Replaces the client's rules (PUT is EMQX's idempotent upsert) and clears its authz cache. */
    async writeAcl(input: { clientId: string; rules: AclRule[] }): Promise<void> {
      await emqxStep(() => emqx.putAclRules({ clientid: input.clientId }, input.rules));
      await emqxStep(() => emqx.clearAuthzCache(input.clientId, { ignoreNotFound: true }));
    },

    async removeAcl(input: { clientId: string }): Promise<void> {
      await emqxStep(() => emqx.deleteAclRules({ clientid: input.clientId }));
      await emqxStep(() => emqx.clearAuthzCache(input.clientId, { ignoreNotFound: true }));
    },

    async kickClient(input: { clientId: string }): Promise<{ kicked: boolean }> {
      return { kicked: await emqxStep(() => emqx.kickClient(input.clientId)) };
    },

    /**
     * Makes the device's session's subscriptions match the desired ones: a connected client's, or an
     * offline persistent session's, which EMQX subscribes as well (its channel outlives the
     * connection: https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt.erl
     * `do_subscribe/2`), so what is published meanwhile is queued for the device. A device without
     * a session is left for the presence workflow to bring up to date on its next connect.
     * `online` says whether the device is connected.
     */
    async applySubscriptions(input: { clientId: string; desired: Subscription[]; previous: Subscription[] }): Promise<{ online: boolean; applied: number }> {
      const session = await emqxStep(() => emqx.getClient(input.clientId));
      if (!session) return { online: false, applied: 0 };
      const online = session.connected === true;
      const desiredTopics = new Set(input.desired.map((s) => s.topic));
      const stale = input.previous.map((s) => s.topic).filter((t) => !desiredTopics.has(t));
      try {
        if (stale.length > 0) await emqx.unsubscribeBulk(input.clientId, stale);
        if (input.desired.length === 0) return { online, applied: 0 };
        const result = await emqx.subscribeBulk(input.clientId, input.desired.map((s) => ({ topic: s.topic, qos: s.qos })));
        // EMQX grants proxy subscriptions without an ACL check; what fails here is a malformed
        // request (a bad `$share` filter), which retrying will not change.
        const rejected = result.failed.filter((f) => !f.clientGone);
        if (rejected.length > 0) {
          const reasons = rejected.map((f) => `${f.topic}: ${f.reason}`).join('; ');
          throw ApplicationFailure.nonRetryable(`EMQX rejected subscriptions for ${input.clientId}: ${reasons}`, 'SubscriptionRejected');
        }
        // The session ended during the call: the presence workflow re-applies on connect.
        if (result.clientGone) return { online: false, applied: result.succeeded.length };
        return { online, applied: result.succeeded.length };
      } catch (err) {
        if (err instanceof EmqxNotFoundError) return { online: false, applied: 0 }; // the session ended meanwhile
        throw asActivityFailure(err);
      }
    },

    async getDeviceRecord(input: { clientId: string }): Promise<DeviceRecord | null> {
      return history.getDevice(input.clientId);
    },

    /** Saves the record and tells the open continuous campaigns it matches now (src/activities/campaign-join.ts). */
    async saveDeviceRecord(input: { record: DeviceRecord }): Promise<void> {
      await history.saveDevice(input.record);
      await tellContinuousCampaignsOf(history, [input.record]);
    },

    async deleteDeviceRecord(input: { clientId: string }): Promise<void> {
      await history.deleteDevice(input.clientId);
    },

    async recordAudit(input: {
      key: string;
      clientId: string;
      operation: string;
      outcome: 'succeeded' | 'failed' | 'compensated';
      details?: Record<string, string | number | boolean | null>;
    }): Promise<void> {
      await history.recordAudit({ ...input, at: new Date().toISOString() });
    },
  };
}
