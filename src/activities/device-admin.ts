import { randomBytes } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/activity';
import { EmqxNotFoundError, type EmqxClient } from '../emqx';
import type { History } from '../history';
import type { AclRule, DeviceRecord, Subscription } from '../domain/device';
import { asActivityFailure, emqxStep } from './failures';

/**
 * Single-device steps. Each is idempotent: a create that meets an existing object updates it, a
 * delete that meets nothing is done, and MongoDB writes are keyed upserts.
 */
export function createDeviceAdminActivities(deps: { emqx: EmqxClient; history: History }) {
  const { emqx, history } = deps;

  async function isOnline(clientId: string): Promise<boolean> {
    const client = await emqxStep(() => emqx.getClient(clientId));
    return client?.connected === true;
  }

  return {
    /** 24 characters from 144 random bits; returned through the encrypted payload codec only. */
    async generatePassword(): Promise<string> {
      return Promise.resolve(randomBytes(18).toString('base64url'));
    },

    async ensureCredentials(input: { username: string; password: string }): Promise<{ created: boolean }> {
      const outcome = await emqxStep(() => emqx.upsertUser({ user_id: input.username, password: input.password }));
      return { created: outcome === 'created' };
    },

    async replacePassword(input: { username: string; password: string }): Promise<void> {
      try {
        await emqx.updateUser(input.username, { password: input.password });
      } catch (err) {
        if (err instanceof EmqxNotFoundError) {
          throw ApplicationFailure.nonRetryable(`EMQX has no user ${input.username}`, 'DeviceNotProvisioned');
        }
        throw asActivityFailure(err);
      }
    },

    async removeCredentials(input: { username: string }): Promise<{ existed: boolean }> {
      return { existed: await emqxStep(() => emqx.deleteUserIfExists(input.username)) };
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
     * Makes a live session's subscriptions match the desired ones. EMQX only accepts proxy
     * subscriptions for a live session (reference §4.5), so an offline device is left for the
     * presence workflow to bring up to date on its next connect.
     */
    async applySubscriptions(input: { clientId: string; desired: Subscription[]; previous: Subscription[] }): Promise<{ online: boolean; applied: number }> {
      if (!(await isOnline(input.clientId))) return { online: false, applied: 0 };
      const desiredTopics = new Set(input.desired.map((s) => s.topic));
      const stale = input.previous.map((s) => s.topic).filter((t) => !desiredTopics.has(t));
      try {
        if (stale.length > 0) await emqx.unsubscribeBulk(input.clientId, stale);
        if (input.desired.length === 0) return { online: true, applied: 0 };
        const result = await emqx.subscribeBulk(input.clientId, input.desired.map((s) => ({ topic: s.topic, qos: s.qos })));
        // EMQX grants proxy subscriptions without an ACL check; what fails here is a malformed
        // request (a bad `$share` filter), which retrying will not change.
        const rejected = result.failed.filter((f) => !f.clientGone);
        if (rejected.length > 0) {
          const reasons = rejected.map((f) => `${f.topic}: ${f.reason}`).join('; ');
          throw ApplicationFailure.nonRetryable(`EMQX rejected subscriptions for ${input.clientId}: ${reasons}`, 'SubscriptionRejected');
        }
        // Disconnected during the call: offline, the presence workflow re-applies on connect.
        if (result.clientGone) return { online: false, applied: result.succeeded.length };
        return { online: true, applied: result.succeeded.length };
      } catch (err) {
        if (err instanceof EmqxNotFoundError) return { online: false, applied: 0 }; // went offline meanwhile
        throw asActivityFailure(err);
      }
    },

    async getDeviceRecord(input: { clientId: string }): Promise<DeviceRecord | null> {
      return history.getDevice(input.clientId);
    },

    async saveDeviceRecord(input: { record: DeviceRecord }): Promise<void> {
      await history.saveDevice(input.record);
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
