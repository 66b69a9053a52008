/**
 * The campaign vocabulary that workflow code needs: statuses, counts, chunking, ids. No zod here
 * (the request schemas are in ./schemas/campaign): the workflow bundle runs every module it imports again
 * for each workflow it starts, and zod's own module code cost ~6 ms per workflow start.
 */

/**
 * The most targets per stored chunk (one MongoDB document each) of new campaigns (chunkSizeFor
 * picks the size, up to this), and the most one publishing activity handles: five bulk requests
 * of the default 500. Each activity costs a
 * Temporal round trip (worker and server CPU, and a slot idle until the next workflow task), so
 * larger chunks leave more of the machine to publishing (bench/campaign: 1,000 -> 2,500 took a
 * 10,000-target campaign from about 0.45 to 0.55 of the direct bulk rate); an offline-heavy
 * chunk's state (the full state of each open target, rewritten after each request) grows with it,
 * so not larger.
 */
export const CAMPAIGN_CHUNK_SIZE = 2_500;
/** Targets per /publish/bulk request at most. */
export const MAX_BATCH_SIZE = 1_000;

/** How a campaign's targets are stored: the workflow needs this before its first batch. */
export interface TargetChunking {
  total: number;
  chunkCount: number;
  /** Targets per chunk (the last chunk may hold fewer). */
  chunkSize: number;
}

/** Per-target status. pending/retrying/waiting are open; the rest are final. */
export type TargetStatus = 'pending' | 'retrying' | 'waiting' | 'delivered' | 'offline' | 'failed' | 'timed_out' | 'cancelled';
export const FINAL_STATUSES: readonly TargetStatus[] = ['delivered', 'offline', 'failed', 'timed_out', 'cancelled'];
export function isFinal(status: TargetStatus): boolean {
  return FINAL_STATUSES.includes(status);
}

export interface TargetCounts {
  total: number;
  delivered: number;
  offline: number;
  failed: number;
  timedOut: number;
  cancelled: number;
  /** Not final yet: never tried, retrying, or waiting for the device (includes `waiting`). */
  pending: number;
  waiting: number;
}

export function emptyCounts(total = 0): TargetCounts {
  return { total, delivered: 0, offline: 0, failed: 0, timedOut: 0, cancelled: 0, pending: total, waiting: 0 };
}

export function addCounts(a: TargetCounts, b: TargetCounts): TargetCounts {
  return {
    total: a.total + b.total,
    delivered: a.delivered + b.delivered,
    offline: a.offline + b.offline,
    failed: a.failed + b.failed,
    timedOut: a.timedOut + b.timedOut,
    cancelled: a.cancelled + b.cancelled,
    pending: a.pending + b.pending,
    waiting: a.waiting + b.waiting,
  };
}

/** One chunk's state as the publishing activity reports it: absolute, so a retried activity reports the same. */
export interface ChunkReport {
  chunk: number;
  counts: TargetCounts;
  /** Earliest time an open target is due again; null when every target is final. */
  nextDueAt: number | null;
  /** Publish attempts made by this activity run (rate accounting). */
  published: number;
  /** Targets delivered by this activity run (exponential ramp). */
  delivered: number;
  /** Over the chunk's targets, absolute: targets tried at least once, attempts made, transient errors met. */
  attempted: number;
  attempts: number;
  transientErrors: number;
}

/** Campaign workflow ids say what and whom. */
export function campaignWorkflowId(campaignId: string): string {
  return `campaign/${campaignId}`;
}
