import { heartbeat } from '@temporalio/activity';
import { EmqxError, EmqxNotFoundError, type EmqxClient } from '../emqx';
import type { History } from '../history';
import type { AclRule, Subscription } from '../domain/device';
import { effectiveAcl } from '../domain/device';
import { asActivityFailure, emqxStep, mapPooled } from './failures';

/** How many EMQX requests one batch activity keeps in flight (the client's pool is 16 by default). */
const CONCURRENCY = 32;

/** Writes in slices of 100 with a heartbeat after each, so a slow store shows progress, not a hung activity. */
async function inSlices<T>(items: T[], write: (slice: T[]) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += 100) {
    await write(items.slice(i, i + 100));
    heartbeat({ written: Math.min(items.length, i + 100) });
  }
}

/**
 * Batched fleet steps: one activity handles a whole chunk, heartbeating as it goes, so a fleet
 * import costs a few activities per chunk, not a few per device.
 */
export function createFleetActivities(deps: { emqx: EmqxClient; history: History }) {
  const { emqx, history } = deps;

  return {
    async importCredentials(input: { devices: { username: string; password: string }[] }): Promise<{ total: number; failed: number }> {
      if (input.devices.length === 0) return { total: 0, failed: 0 };
      const entries = input.devices.map((d) => ({ user_id: d.username, password: d.password }));
      const counts = await emqxStep(() => emqx.importUsers('plain', entries));
      return { total: counts.total, failed: counts.failed };
    },

    async findMissingUsers(input: { usernames: string[] }): Promise<string[]> {
      const found = await mapPooled(input.usernames, CONCURRENCY, (username) => emqxStep(() => emqx.getUser(username)));
      return input.usernames.filter((_, i) => found[i] === null);
    },

    /** Writes each device's rules; a rule EMQX rejects fails that device only, an outage retries the batch. */
    async writeAclBatch(input: { entries: { clientId: string; rules: AclRule[] }[] }): Promise<{ clientId: string; error: string }[]> {
      let done = 0;
      const outcomes = await mapPooled(input.entries, CONCURRENCY, async (entry) => {
        try {
          await emqx.putAclRules({ clientid: entry.clientId }, effectiveAcl(entry.rules));
          return null;
        } catch (err) {
          if (err instanceof EmqxError && !err.retryable) return { clientId: entry.clientId, error: err.message };
          throw asActivityFailure(err);
        } finally {
          done += 1;
          if (done % 100 === 0) heartbeat({ done });
        }
      });
      return outcomes.filter((o): o is { clientId: string; error: string } => o !== null);
    },

    async saveFleetDeviceRecords(input: {
      devices: { clientId: string; username: string; acl: AclRule[]; subscriptions: Subscription[]; tags: string[] }[];
    }): Promise<void> {
      const now = new Date().toISOString();
      const records = input.devices.map((d) => ({ ...d, status: 'active' as const, provisionedAt: now, updatedAt: now }));
      await inSlices(records, (slice) => history.saveDevices(slice));
    },

    /** Applies desired subscriptions to the devices that are online now; the rest get them on connect. */
    async applySubscriptionsBatch(input: { entries: { clientId: string; subscriptions: Subscription[] }[] }): Promise<{ applied: number }> {
      const applied = await mapPooled(input.entries, CONCURRENCY, async (entry) => {
        try {
          await emqx.subscribeBulk(entry.clientId, entry.subscriptions.map((s) => ({ topic: s.topic, qos: s.qos })));
          return 1;
        } catch (err) {
          if (err instanceof EmqxNotFoundError) return 0;
          throw asActivityFailure(err);
        }
      });
      heartbeat({ done: input.entries.length });
      return { applied: applied.reduce<number>((a, b) => a + b, 0) };
    },

    async recordFleetResults(input: {
      fleetId: string;
      results: { clientId: string; status: 'provisioned' | 'failed'; error?: string }[];
    }): Promise<void> {
      const at = new Date().toISOString();
      await inSlices(input.results.map((r) => ({ ...r, fleetId: input.fleetId, at })), (slice) => history.recordFleetResults(slice));
    },
  };
}
