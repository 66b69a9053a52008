import { heartbeat } from '@temporalio/activity';
import { EmqxError, EmqxNotFoundError, type EmqxClient } from '../emqx';
import type { History } from '../store';
import type { AclRule, PasswordHash, Subscription } from '../domain/schemas/device';
import { mapPooled } from './failures';
import { tellContinuousCampaignsOf } from './campaign-join';

/** How many EMQX requests one batch activity keeps in flight (the client's pool is 16 by default). */
const CONCURRENCY = 32;
/** Users per `import_users` request. */
const IMPORT_SLICE = 100;
/** Tries per device request before that device is reported failed: at a 30% error rate 0.3^12 ≈ 5e-7 per request; at most about 20 s of backoff. */
const DEVICE_ATTEMPTS = 12;

/** Writes in slices of 100 with a heartbeat after each, so a slow store shows progress, not a hung activity. */
async function inSlices<T>(items: T[], write: (slice: T[]) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += 100) {
    await write(items.slice(i, i + 100));
    heartbeat({ written: Math.min(items.length, i + 100) });
  }
}

/**
 * One device's EMQX request, retried on its own while EMQX answers with a retryable error (5xx,
 * 429, timeouts), so one failing request never fails or repeats a whole chunk. Backoff 100 ms
 * doubling to 3 s; a non-retryable error ends at once.
 */
async function retried<T>(request: () => Promise<T>, alive: () => void = () => heartbeat()): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await request();
    } catch (err) {
      if (!(err instanceof EmqxError) || !err.retryable || attempt >= DEVICE_ATTEMPTS) throw err;
      // Still working: a chunk whose devices all retry for a while must not miss its heartbeat timeout.
      alive();
      await new Promise((resolve) => setTimeout(resolve, Math.min(3_000, 100 * 2 ** (attempt - 1))));
    }
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export interface FleetDeviceFailure {
  clientId: string;
  error: string;
}

/** What EMQX holds for a device after a settle: the project's records follow it. */
export type FleetDeviceState = 'complete' | 'removed';

/**
 * Batched fleet steps: one activity handles a whole chunk, heartbeating as it goes. Each device's
 * requests are retried per device and a device that still fails is reported by its own client id,
 * never the chunk; the activity itself only fails when it cannot tell what happened.
 */
export function createFleetActivities(deps: { emqx: EmqxClient; history: History }) {
  const { emqx, history } = deps;

  /** Runs one request per entry, pooled and retried per device; returns the devices that failed, each with its own error. */
  async function perDevice<T extends { clientId: string }>(entries: T[], request: (entry: T) => Promise<unknown>): Promise<FleetDeviceFailure[]> {
    let done = 0;
    const outcomes = await mapPooled(entries, CONCURRENCY, async (entry) => {
      try {
        await retried(() => request(entry), () => heartbeat({ done }));
        return null;
      } catch (err) {
        return { clientId: entry.clientId, error: messageOf(err) };
      } finally {
        done += 1;
        // The SDK sends heartbeats throttled (at most one per 0.8 of the heartbeat timeout).
        heartbeat({ done });
      }
    });
    return outcomes.filter((o): o is FleetDeviceFailure => o !== null);
  }

  return {
    /** Writes each device's rules (already rendered, with the final deny). */
    async writeAclBatch(input: { entries: { clientId: string; rules: AclRule[] }[] }): Promise<FleetDeviceFailure[]> {
      return perDevice(input.entries, (entry) => emqx.putAclRules({ clientid: entry.clientId }, entry.rules));
    },

    /**
     * Stores password hashes under the client ids, 100 per `import_users?type=hash` request (which
     * overwrites existing users). A request that fails for good, or reports failed entries, is
     * redone one device at a time so each failure names its own device.
     */
    async importCredentialsBatch(input: { devices: { clientId: string; hash: PasswordHash }[] }): Promise<FleetDeviceFailure[]> {
      const failures: FleetDeviceFailure[] = [];
      const entry = (d: { clientId: string; hash: PasswordHash }) => ({ user_id: d.clientId, password_hash: d.hash.passwordHash, salt: d.hash.salt });
      for (let i = 0; i < input.devices.length; i += IMPORT_SLICE) {
        const slice = input.devices.slice(i, i + IMPORT_SLICE);
        const counts = await retried(() => emqx.importUsers('hash', slice.map(entry))).catch(() => null);
        if (counts === null || counts.failed > 0) {
          failures.push(...(await perDevice(slice, async (d) => {
            const one = await emqx.importUsers('hash', [entry(d)]);
            if (one.failed > 0) throw new Error('EMQX did not import the credentials');
          })));
        }
        heartbeat({ imported: Math.min(input.devices.length, i + IMPORT_SLICE) });
      }
      return failures;
    },

    /**
     * Makes EMQX safe and consistent for devices whose provisioning did not finish: a device with
     * both credentials and rules is `complete` (its record is then written); one with only rules
     * loses them, and one with only credentials loses them and is kicked, so no device is ever left
     * able to connect without its ACL. Retried per device; throws when a device cannot be settled.
     */
    async settleFleetDevices(input: { clientIds: string[] }): Promise<{ clientId: string; state: FleetDeviceState }[]> {
      return mapPooled(input.clientIds, CONCURRENCY, async (clientId) => {
        const [user, rules] = await Promise.all([retried(() => emqx.getUser(clientId)), retried(() => emqx.getAclRules({ clientid: clientId }))]);
        if (user && rules) return { clientId, state: 'complete' as const };
        if (user) {
          await retried(() => emqx.deleteUserIfExists(clientId));
          await retried(() => emqx.kickClient(clientId));
        }
        if (rules) await retried(() => emqx.deleteAclRules({ clientid: clientId }));
        return { clientId, state: 'removed' as const };
      });
    },

    async saveFleetDeviceRecords(input: {
      devices: { clientId: string; username: string; acl: AclRule[]; subscriptions: Subscription[]; tags: string[] }[];
    }): Promise<void> {
      const now = new Date().toISOString();
      const records = input.devices.map((d) => ({ ...d, status: 'active' as const, provisionedAt: now, updatedAt: now }));
      await inSlices(records, (slice) => history.saveDevices(slice));
      await tellContinuousCampaignsOf(history, records);
    },

    /**
     * Applies desired subscriptions to the devices that are online now; the rest get them on
     * connect, and so does a device whose request still fails here (it is counted, not fatal).
     */
    async applySubscriptionsBatch(input: { entries: { clientId: string; subscriptions: Subscription[] }[] }): Promise<{ applied: number; deferred: number }> {
      let applied = 0;
      let partial = 0;
      const failures = await perDevice(input.entries, async (entry) => {
        try {
          // A device that left during the call (or whose topic EMQX refused) is not counted as
          // applied: its presence workflow re-applies the desired subscriptions on its next connect.
          const result = await emqx.subscribeBulk(entry.clientId, entry.subscriptions.map((s) => ({ topic: s.topic, qos: s.qos })));
          if (result.failed.length === 0) applied += 1;
          else partial += 1;
        } catch (err) {
          if (!(err instanceof EmqxNotFoundError)) throw err;
        }
      });
      return { applied, deferred: failures.length + partial };
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
