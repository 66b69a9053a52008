import type { Client } from '@temporalio/client';
import type { Config } from '../config';
import { presenceEventsSignal, presenceWorkflowId } from '../contracts/presence';
import type { PresenceEvent } from '../domain/presence';
import { AlarmLevelKey, DeviceIdKey, DeviceOperationKey, PresenceKey } from '../domain/search-attributes';
import type { History } from '../store';
import { wakeCampaigns } from './campaign-wake';
import type { devicePresence } from '../workflows/presence';

/**
 * Hands presence events to the device's workflow, with the campaigns waiting for the device (see
 * presenceEventsSignal), starting the workflow if it is not running (signal-with-start is atomic:
 * https://docs.temporal.io/develop/typescript/message-passing#signal-with-start). Used by the webhook adapter
 * and by reconciliation, through PresenceDelivery, which first checks that the client is tracked. The search
 * attributes are those of a new workflow (a running one keeps its own): `Presence` is already what
 * the events leave the device, so a first connect needs no upsert (an action on Temporal Cloud).
 */
export async function deliverPresenceEvents(
  client: Client,
  options: { clientId: string; taskQueue: string; events: PresenceEvent[]; campaigns?: string[]; continueAsNewAfter?: number },
): Promise<void> {
  const { clientId } = options;
  await client.workflow.signalWithStart<typeof devicePresence, [{ events: PresenceEvent[]; campaigns?: string[] }]>('devicePresence', {
    workflowId: presenceWorkflowId(clientId),
    taskQueue: options.taskQueue,
    args: [{ clientId, ...(options.continueAsNewAfter ? { continueAsNewAfter: options.continueAsNewAfter } : {}) }],
    signal: presenceEventsSignal,
    signalArgs: [{ events: options.events, ...(options.campaigns?.length ? { campaigns: options.campaigns } : {}) }],
    typedSearchAttributes: [
      { key: DeviceIdKey, value: clientId },
      { key: DeviceOperationKey, value: 'presence' },
      { key: PresenceKey, value: endsConnected(options.events) ? 'online' : 'unknown' },
      { key: AlarmLevelKey, value: 0 },
    ],
  });
}

/**
 * Which clients get a device workflow (and so presence alarms). Every client's events are recorded
 * in MongoDB by the webhook adapter; a workflow, which lives as long as the device, is only for a
 * provisioned device (a record in `devices`, whatever its status: a deprovisioned device's workflow
 * sees its last disconnect and ends), unless the policy says otherwise. So connecting with
 * arbitrary client ids (monitoring tools, one-shot publishers, an attacker) grows no worker state.
 */
export interface PresenceTracking {
  /** `record`: unknown clients are recorded only. `track`: every client gets a device workflow. */
  unknownClients: 'record' | 'track';
  /** Unknown clients whose id matches are tracked even under `record`. */
  trackPattern?: RegExp;
}

export const DEFAULT_PRESENCE_TRACKING: PresenceTracking = { unknownClients: 'record' };

/** PRESENCE_UNKNOWN_CLIENTS and PRESENCE_TRACK_PATTERN. */
export function presenceTrackingFromConfig(presence: Config<'presence'>['presence']): PresenceTracking {
  return { unknownClients: presence.PRESENCE_UNKNOWN_CLIENTS, ...(presence.PRESENCE_TRACK_PATTERN ? { trackPattern: presence.PRESENCE_TRACK_PATTERN } : {}) };
}

/** Provisioned client ids are remembered this long; unknown ones are looked up on every delivery. */
const KNOWN_TTL_MS = 5 * 60_000;
/** At most this many provisioned ids are remembered (the oldest go first). */
const KNOWN_MAX = 50_000;
/** Ids per MongoDB lookup. */
const LOOKUP_CHUNK = 1_000;
/** Up to this many ids are looked up by `_id` equality, one query each (see TrackedClients.lookUp). */
const FEW_IDS = 8;

/**
 * Decides whether clients are tracked. Only positive answers are cached: a record, once written,
 * stays (deprovisioning keeps it), so a cached "provisioned" stays right; an unknown client is
 * looked up again on its next delivery, so a device provisioned after its first connect is tracked
 * from its next event (or from the next reconciliation, which finds it online). Nothing an unknown
 * client does adds to the cache.
 */
export class TrackedClients {
  private readonly known = new Map<string, number>();

  constructor(
    private readonly history: Pick<History, 'devices'>,
    private readonly policy: PresenceTracking = DEFAULT_PRESENCE_TRACKING,
  ) {}

  /** Tracked by policy alone, without a lookup. */
  private trackedByPolicy(clientId: string): boolean {
    return this.policy.unknownClients === 'track' || (this.policy.trackPattern?.test(clientId) ?? false);
  }

  async has(clientId: string): Promise<boolean> {
    return (await this.among([clientId])).has(clientId);
  }

  /** The tracked ones among `clientIds`. A MongoDB failure rejects: the caller retries rather than drop a device's events. */
  async among(clientIds: readonly string[]): Promise<Set<string>> {
    const now = Date.now();
    const tracked = new Set<string>();
    const unsure: string[] = [];
    for (const clientId of clientIds) {
      const cachedAt = this.known.get(clientId);
      if (this.trackedByPolicy(clientId) || (cachedAt !== undefined && now - cachedAt < KNOWN_TTL_MS)) tracked.add(clientId);
      else unsure.push(clientId);
    }
    for (let i = 0; i < unsure.length; i += LOOKUP_CHUNK) {
      const chunk = unsure.slice(i, i + LOOKUP_CHUNK);
      for (const { _id } of await this.lookUp(chunk)) {
        tracked.add(_id);
        this.remember(_id, now);
      }
    }
    return tracked;
  }

  /**
   * The device records among `ids`. A few ids are looked up one by one: FerretDB 1.x (SQLite) uses its
   * `_id` index for an `_id` equality only and scans the whole collection for `$in` (measured with 3,000
   * devices: 350 ms for `$in` of one id, 3 ms for the equality), and the relay asks for one id per delivery.
   */
  private async lookUp(ids: string[]): Promise<{ _id: string }[]> {
    if (ids.length > FEW_IDS) return this.history.devices.find({ _id: { $in: ids } }, { projection: { _id: 1 } }).toArray();
    const found = await Promise.all(ids.map((_id) => this.history.devices.findOne({ _id }, { projection: { _id: 1 } })));
    return found.flatMap((doc) => (doc ? [{ _id: doc._id }] : []));
  }

  private remember(clientId: string, at: number): void {
    this.known.delete(clientId);
    this.known.set(clientId, at);
    if (this.known.size > KNOWN_MAX) this.known.delete(this.known.keys().next().value as string);
  }
}

export interface PresenceDeliveryOptions {
  temporal: Client;
  taskQueue: string;
  history: Pick<History, 'devices'>;
  tracking?: PresenceTracking;
  /** Passed to device workflows this delivery starts (tests force continue-as-new with it). */
  continueAsNewAfter?: number;
}

/** deliverPresenceEvents for tracked clients only: what the webhook adapter and reconciliation call. */
export class PresenceDelivery {
  readonly tracked: TrackedClients;

  constructor(private readonly options: PresenceDeliveryOptions) {
    this.tracked = new TrackedClients(options.history, options.tracking);
  }

  /**
   * Signals the device workflow if the client is tracked; says whether it did. For an untracked
   * client, the campaigns waiting for it are told directly when the batch leaves it connected (its
   * newest event is a connect): it has no desired subscriptions for a workflow to re-apply first.
   */
  async deliver(clientId: string, events: PresenceEvent[], campaigns: string[] = []): Promise<boolean> {
    if (!(await this.tracked.has(clientId))) {
      if (campaigns.length > 0 && endsConnected(events)) await wakeCampaigns(this.options.temporal, campaigns, clientId);
      return false;
    }
    await deliverPresenceEvents(this.options.temporal, {
      clientId,
      taskQueue: this.options.taskQueue,
      events,
      campaigns,
      ...(this.options.continueAsNewAfter ? { continueAsNewAfter: this.options.continueAsNewAfter } : {}),
    });
    return true;
  }
}

/** The newest event (by event time; a disconnect after a connect at the same instant) is a connect. */
function endsConnected(events: readonly PresenceEvent[]): boolean {
  let newest: { at: number; connected: boolean } | null = null;
  for (const event of events) {
    if (event.kind === 'observed') continue;
    const at = event.kind === 'connected' ? event.connectedAt : event.disconnectedAt;
    if (!newest || at > newest.at || (at === newest.at && event.kind === 'disconnected')) newest = { at, connected: event.kind === 'connected' };
  }
  return newest?.connected ?? false;
}
