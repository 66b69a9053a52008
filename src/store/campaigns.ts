import { MongoServerError, type Collection, type Db } from 'mongodb';
import {
  CAMPAIGN_CHUNK_SIZE,
  type CampaignState,
  type CampaignTarget,
  type MessageTemplate,
  type TargetCounts,
  type TargetSelector,
  type TargetStatus,
  type Transport,
} from '../domain/schemas/campaign';
import { ChunkLedger, type ChunkLedgerData, type Effort } from '../domain/campaign-chunk';
import { DUPLICATE_KEY, insertNew } from './bulk-upsert';
import { NO_SUBSCRIBER_ERROR, type AttemptOutcome, type DeviceDelivery, type TargetState } from '../domain/campaign-target-state';

/**
 * Campaign storage. Targets live here, not in workflow input, in chunks of one size per campaign
 * (chunkSizeFor, at most CAMPAIGN_CHUNK_SIZE; recorded with the campaign):
 * - `campaigns`: one document per campaign (message template, state, final counts);
 * - `campaign_chunks`: a chunk's targets, immutable once written;
 * - `campaign_chunk_states`: a chunk's working state (ChunkLedger: a letter per finished target,
 *   the full state of open ones), rewritten by the one activity that owns the chunk at a time;
 * - `campaign_targets`: one record per target (status, attempts, last error, message id), inserted
 *   once when the target reaches its final status (unique `_id` `<campaignId>/<clientId>`, so a
 *   retried activity cannot write a second; the campaign and client ids are not repeated as fields);
 * - `campaign_waiting`: which campaigns wait for a device to reconnect (cleared when a campaign ends);
 * - `campaign_members`: continuous campaigns only, which devices are targets already and in which
 *   chunk (`_id` `<campaignId>/<clientId>`, inserted once: a device joins at most once).
 *
 * Why this shape (measured on the dev stack's FerretDB 1.24 with SQLite): every update or delete
 * scans its whole collection (~250 ms per document at 100,000 documents) and only `{_id: <string>}`
 * filters reach SQLite, while inserts are cheap. So the hot path inserts per-target records and
 * rewrites one small state document per batch, addressed by `_id` (every rewrite still scans the
 * whole table, so state documents stay a few KB: finished targets are one letter each). Chunk
 * targets (plain client ids one per line, else JSON) and open states are strings because FerretDB
 * keeps a per-element type schema for arrays, which made reading and rewriting a 1,000-entry array
 * ~20 times slower. On MongoDB the same layout is simply cheap.
 */

export interface CampaignRecord {
  campaignId: string;
  workflowId: string;
  state: CampaignState;
  /** True from creation until the campaign ends; reconnect signals go to active campaigns only. */
  active: boolean;
  transport: Transport;
  waitOffline: boolean;
  /** Targets report the job's execution (job id = campaign id, docs/jobs.md). */
  expectReply?: boolean;
  /** Continuous campaigns: `open` while devices provisioned or tagged later join (docs/campaigns.md). */
  continuous?: 'open' | 'closed';
  createdAt: string;
  /** Which start call stored this record (a repeated start with the id takes over only from a failed one). */
  startAttempt: string;
  startedAt?: string;
  finishedAt?: string;
  /** Targets: given as a list, or selected from device records when the workflow starts. */
  targets: {
    source: 'list' | 'selector';
    selector?: TargetSelector;
    total?: number;
    chunkCount?: number;
    /** Targets per chunk (set with total and chunkCount). */
    chunkSize?: number;
  };
  counts?: TargetCounts;
  reason?: string;
  /** Its rollback campaign's id, once started (docs/jobs.md, "Rollback on abort"). */
  rollback?: string;
  /** A rollback campaign: the campaign it rolls back. */
  rollbackOf?: string;
}

/** One target's final record. */
export interface CampaignTargetRecord {
  campaignId: string;
  clientId: string;
  status: TargetStatus;
  attempts: number;
  messageId?: string;
  /** Delivered targets: `connected` (sent to the device's connection) or `queued` (in its offline persistent session). */
  delivery?: DeviceDelivery;
  lastError?: string;
  firstAttemptAt?: string;
  finishedAt: string;
}

/** A target in the results: its final record, or where an open target stands. */
export interface CampaignResultRow extends Omit<CampaignTargetRecord, 'campaignId' | 'finishedAt'> {
  finishedAt?: string;
  nextAttemptAt?: string;
  /** Campaigns with replies: the target's execution state (QUEUED ... TIMED_OUT), progress and details (JSON text) as the device reported them. */
  replyStatus?: string;
  replyProgress?: number;
  replyDetails?: string;
  /** Campaigns with job retries: how often the target's job was published again (attempts - 1). */
  replyRetries?: number;
}

export interface WaitingEntry {
  campaignId: string;
  clientId: string;
  chunk: number;
  index: number;
}

type WithId<T> = T & { _id: string };
/** A stored final record: `_id` `<campaignId>/<clientId>` carries both ids. */
type TargetDocument = WithId<Omit<CampaignTargetRecord, 'campaignId' | 'clientId'>>;
type CampaignDocument = WithId<CampaignRecord & { message: string; rollbackMessage?: string }>;
interface ChunkDocument {
  _id: string;
  campaignId: string;
  chunk: number;
  /** The client ids, one per line, when no target in the chunk has template values (client ids hold no control characters). */
  ids?: string;
  /** Otherwise the targets as a JSON string. */
  targets?: string;
}
interface ChunkStateDocument {
  _id: string;
  campaignId: string;
  chunk: number;
  /** ChunkLedgerData: `finished` letters run-length encoded (`d998.2`), `open` states as a JSON string, summed `effort`. */
  finishedRuns: string;
  open: string;
  effort: Effort;
  lastBatch?: BatchMark;
  sending?: SendingMark;
  updatedAt: string;
}

/** The last batch applied to a chunk, so a retried activity returns its result instead of publishing again. */
export interface BatchMark {
  id: string;
  published: number;
  delivered: number;
}

/**
 * A request on its way to EMQX, written before it is sent: if the activity's worker dies before
 * the request's outcome is written, the retried activity (same batch id) finds these positions and
 * knows EMQX may have published their messages (an unknown outcome, not a fresh try). Once EMQX
 * has answered, its answer is added (`answered`, one outcome per position), so a worker that dies
 * while writing the outcomes leaves the answer behind, and the retry applies it instead of giving up.
 */
export interface SendingMark {
  batch: string;
  positions: number[];
  answered?: AttemptOutcome[];
}

/** A chunk's stored working state. */
export interface ChunkState {
  ledger: ChunkLedgerData;
  lastBatch?: BatchMark;
  sending?: SendingMark;
}

/**
 * Open states as stored: a target waiting for its device says so with `lastFailure`, so the fixed
 * no-subscriber message is left out (a third of a waiting state; offline-heavy chunks rewrite
 * thousands of them after every request) and put back on reading.
 */
function compactOpenState(this: unknown, key: string, value: unknown): unknown {
  if (key === 'lastError' && value === NO_SUBSCRIBER_ERROR && (this as TargetState).lastFailure === 'no_subscriber') return undefined;
  return value;
}

function restoreOpenState(key: string, value: unknown): unknown {
  if (typeof value !== 'object' || value === null || !/^\d+$/.test(key)) return value;
  const state = value as TargetState;
  if (state.lastFailure === 'no_subscriber' && state.lastError === undefined) state.lastError = NO_SUBSCRIBER_ERROR;
  return value;
}

/** Waits for every write, then throws the first failure (if any). */
async function allSettled(writes: Promise<unknown>[]): Promise<void> {
  const failed = (await Promise.allSettled(writes)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** `dddd.ff` -> `d4.1f2`: a chunk's letters come in long runs, and FerretDB parses every state row on each state write. */
export function encodeRuns(letters: string): string {
  let out = '';
  for (let i = 0; i < letters.length; ) {
    let j = i + 1;
    while (j < letters.length && letters[j] === letters[i]) j++;
    out += `${letters[i] as string}${j - i}`;
    i = j;
  }
  return out;
}

export function decodeRuns(runs: string): string {
  let out = '';
  for (const [, letter, count] of runs.matchAll(/(\D)(\d+)/g)) out += (letter as string).repeat(Number(count));
  return out;
}

export function chunkKey(campaignId: string, chunk: number): string {
  return `${campaignId}/${String(chunk).padStart(6, '0')}`;
}

export function targetKey(campaignId: string, clientId: string): string {
  return `${campaignId}/${clientId}`;
}

/** How a campaign's targets are chunked (what `writeChunks` did), or null before they are stored. */
export function chunkingOf(targets: CampaignRecord['targets']): { chunkCount: number; chunkSize: number } | null {
  if (targets.total === undefined || targets.chunkCount === undefined || targets.chunkSize === undefined) return null;
  return { chunkCount: targets.chunkCount, chunkSize: targets.chunkSize };
}

/** The `_id`s `<campaignId>/...`: campaign ids hold no `/`, and `0` is the character after it. */
function campaignRange(campaignId: string): { _id: { $gt: string; $lt: string } } {
  return { _id: { $gt: `${campaignId}/`, $lt: `${campaignId}0` } };
}

const indexed = new WeakSet<Db>();

export class CampaignStore {
  readonly campaigns: Collection<CampaignDocument>;
  readonly chunks: Collection<ChunkDocument>;
  readonly chunkStates: Collection<ChunkStateDocument>;
  readonly targets: Collection<TargetDocument>;
  readonly waiting: Collection<WithId<WaitingEntry & { since: string }>>;
  readonly members: Collection<{ _id: string; chunk: number }>;

  constructor(private readonly db: Db) {
    this.members = db.collection('campaign_members');
    this.campaigns = db.collection('campaigns');
    this.chunks = db.collection('campaign_chunks');
    this.chunkStates = db.collection('campaign_chunk_states');
    this.targets = db.collection('campaign_targets');
    this.waiting = db.collection('campaign_waiting');
  }

  /** Indexes for MongoDB (FerretDB creates them but answers from `_id` alone); once per database. */
  async ensureIndexes(): Promise<void> {
    if (indexed.has(this.db)) return;
    await Promise.all([
      this.campaigns.createIndex({ active: 1 }),
      // No other secondary index: a campaign's documents in every collection are an `_id` prefix
      // range, which the `_id` index serves; on FerretDB each extra index costs a JSON parse per insert.
      this.waiting.createIndex({ clientId: 1 }),
    ]);
    indexed.add(this.db);
  }

  // ---- campaigns ----

  /** Creates the campaign document; false when one with this id exists already. */
  async createCampaign(record: CampaignRecord, message: MessageTemplate): Promise<boolean> {
    await this.ensureIndexes();
    try {
      await this.campaigns.insertOne({ _id: record.campaignId, ...record, message: JSON.stringify(message) });
      return true;
    } catch (err) {
      if (err instanceof MongoServerError && err.code === DUPLICATE_KEY) return false;
      throw err;
    }
  }

  /**
   * Replaces a campaign whose start failed part-way (state still `created`, stored by the start
   * attempt `previousAttempt`); false when it is not so any more (another start took it over).
   */
  async replaceCreatedCampaign(record: CampaignRecord, message: MessageTemplate, previousAttempt: string): Promise<boolean> {
    const { matchedCount } = await this.campaigns.replaceOne(
      { _id: record.campaignId, state: 'created', startAttempt: previousAttempt },
      { ...record, message: JSON.stringify(message) },
    );
    return matchedCount === 1;
  }

  async getCampaign(campaignId: string): Promise<CampaignRecord | null> {
    // Without the message template, which may be as large as a message.
    const doc = await this.campaigns.findOne({ _id: campaignId }, { projection: { message: 0, rollbackMessage: 0 } });
    if (!doc) return null;
    const { _id: _, message: _message, rollbackMessage: _rollback, ...record } = doc;
    return record;
  }

  /** Keeps the message of the campaign's rollback on abort (docs/jobs.md). */
  async setRollbackMessage(campaignId: string, message: MessageTemplate): Promise<void> {
    await this.campaigns.updateOne({ _id: campaignId }, { $set: { rollbackMessage: JSON.stringify(message) } });
  }

  async rollbackMessageOf(campaignId: string): Promise<MessageTemplate | null> {
    const doc = await this.campaigns.findOne({ _id: campaignId }, { projection: { rollbackMessage: 1 } });
    return doc?.rollbackMessage ? (JSON.parse(doc.rollbackMessage) as MessageTemplate) : null;
  }

  async messageOf(campaignId: string): Promise<MessageTemplate | null> {
    const doc = await this.campaigns.findOne({ _id: campaignId }, { projection: { message: 1 } });
    return doc ? (JSON.parse(doc.message) as MessageTemplate) : null;
  }

  /** `created` -> `running`, once its workflow has started (a campaign that got further, or ended already, is left as it is). */
  async markStarted(campaignId: string): Promise<void> {
    await this.campaigns.updateOne({ _id: campaignId, state: 'created' }, { $set: { state: 'running', startedAt: new Date().toISOString() } });
  }

  async updateCampaign(campaignId: string, patch: Partial<Omit<CampaignRecord, 'campaignId'>>): Promise<void> {
    await this.campaigns.updateOne({ _id: campaignId }, { $set: patch });
  }

  /** Running campaigns that keep offline targets waiting for their devices. */
  async waitingCampaignIds(): Promise<string[]> {
    const docs = await this.campaigns.find({ active: true, waitOffline: true }, { projection: { _id: 1 } }).toArray();
    return docs.map((d) => d._id);
  }

  async activeCampaignIds(ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) return new Set();
    const docs = await this.campaigns.find({ _id: { $in: [...ids] }, active: true }, { projection: { _id: 1 } }).toArray();
    return new Set(docs.map((d) => d._id));
  }

  // ---- chunks ----

  /** Writes the targets in chunks (default CAMPAIGN_CHUNK_SIZE) with empty states; returns how. Idempotent. */
  async writeChunks(campaignId: string, targets: readonly CampaignTarget[], chunkSize = CAMPAIGN_CHUNK_SIZE): Promise<{ chunkCount: number; chunkSize: number }> {
    const chunkCount = Math.ceil(targets.length / chunkSize);
    for (let from = 0; from < chunkCount; from += 50) {
      const docs: ChunkDocument[] = [];
      const states: ChunkStateDocument[] = [];
      const now = new Date().toISOString();
      for (let chunk = from; chunk < Math.min(chunkCount, from + 50); chunk++) {
        const slice = targets.slice(chunk * chunkSize, (chunk + 1) * chunkSize);
        const _id = chunkKey(campaignId, chunk);
        const plain = slice.every((t) => t.values === undefined && !t.clientId.includes('\n'));
        docs.push({ _id, campaignId, chunk, ...(plain ? { ids: slice.map((t) => t.clientId).join('\n') } : { targets: JSON.stringify(slice) }) });
        states.push({ _id, campaignId, chunk, finishedRuns: '', open: '{}', effort: { attempted: 0, attempts: 0, transientErrors: 0 }, updatedAt: now });
      }
      // Both settle before a failure is thrown: a retry deletes and rewrites, and a write of this
      // attempt landing after that delete would be kept as "already written".
      await allSettled([insertNew(this.chunks, docs), insertNew(this.chunkStates, states)]);
    }
    return { chunkCount, chunkSize };
  }

  async deleteChunks(campaignId: string): Promise<void> {
    await allSettled([this.chunks.deleteMany(campaignRange(campaignId)), this.chunkStates.deleteMany(campaignRange(campaignId))]);
  }

  /** Everything stored under a campaign but its record: chunks, states, final records, reconnect lookups. */
  async deleteCampaignData(campaignId: string): Promise<void> {
    await allSettled([
      this.deleteChunks(campaignId),
      this.targets.deleteMany(campaignRange(campaignId)),
      this.waiting.deleteMany(campaignRange(campaignId)),
      this.members.deleteMany(campaignRange(campaignId)),
    ]);
  }

  /**
   * Drops an ended campaign's working states: every target has its final record by then. This
   * keeps `campaign_chunk_states` to the running campaigns, which matters on FerretDB, where each
   * state write scans the whole collection.
   */
  async deleteChunkStates(campaignId: string): Promise<void> {
    await this.chunkStates.deleteMany(campaignRange(campaignId));
  }

  async readChunkTargets(campaignId: string, chunk: number): Promise<CampaignTarget[]> {
    const doc = await this.chunks.findOne({ _id: chunkKey(campaignId, chunk) });
    if (!doc) throw new Error(`campaign ${campaignId} has no chunk ${chunk}`);
    if (doc.ids !== undefined) return doc.ids.split('\n').map((clientId) => ({ clientId }));
    return JSON.parse(doc.targets ?? '[]') as CampaignTarget[];
  }

  /** A running campaign's chunk state (every chunk has one until the campaign ends). */
  async readChunkState(campaignId: string, chunk: number): Promise<ChunkState> {
    const state = await this.chunkStateIfAny(campaignId, chunk);
    if (!state) throw new Error(`campaign ${campaignId} has no state for chunk ${chunk}`);
    return state;
  }

  /** A chunk's state, or null once the campaign has ended (its states are deleted then). */
  async chunkStateIfAny(campaignId: string, chunk: number): Promise<ChunkState | null> {
    const doc = await this.chunkStates.findOne({ _id: chunkKey(campaignId, chunk) });
    if (!doc) return null;
    const ledger: ChunkLedgerData = { finished: decodeRuns(doc.finishedRuns), open: JSON.parse(doc.open, restoreOpenState) as Record<number, TargetState>, effort: doc.effort };
    return { ledger, ...(doc.lastBatch ? { lastBatch: doc.lastBatch } : {}), ...(doc.sending ? { sending: doc.sending } : {}) };
  }

  async writeChunkState(campaignId: string, chunk: number, state: ChunkState): Promise<void> {
    await this.chunkStates.replaceOne(
      { _id: chunkKey(campaignId, chunk) },
      {
        campaignId,
        chunk,
        finishedRuns: encodeRuns(state.ledger.finished),
        open: JSON.stringify(state.ledger.open, compactOpenState),
        effort: state.ledger.effort,
        ...(state.lastBatch ? { lastBatch: state.lastBatch } : {}),
        ...(state.sending ? { sending: state.sending } : {}),
        updatedAt: new Date().toISOString(),
      },
    );
  }

  /**
   * Marks (or, with null, unmarks) the request a batch is about to send, leaving the rest of the
   * chunk state as it is; the next writeChunkState replaces the whole state and so clears it.
   */
  async markSending(campaignId: string, chunk: number, mark: SendingMark | null): Promise<void> {
    await this.chunkStates.updateOne({ _id: chunkKey(campaignId, chunk) }, mark ? { $set: { sending: mark } } : { $unset: { sending: '' } });
  }

  /** Adds EMQX's answer to the request marked as sending (see SendingMark). */
  async markAnswered(campaignId: string, chunk: number, answered: AttemptOutcome[]): Promise<void> {
    // Through JSON: an absent field stays absent (the driver would store `undefined` as null).
    const stored = JSON.parse(JSON.stringify(answered)) as AttemptOutcome[];
    await this.chunkStates.updateOne({ _id: chunkKey(campaignId, chunk) }, { $set: { 'sending.answered': stored } });
  }

  // ---- continuous campaigns ----

  /** Open continuous campaigns and their selectors (what a newly provisioned or tagged device is matched against). */
  async openContinuousCampaigns(): Promise<{ campaignId: string; selector: TargetSelector }[]> {
    const docs = await this.campaigns.find({ active: true, continuous: 'open' }, { projection: { _id: 1, targets: 1 } }).toArray();
    return docs.flatMap((d) => (d.targets.selector ? [{ campaignId: d._id, selector: d.targets.selector }] : []));
  }

  /** The first targets of a continuous campaign, as `writeChunks` placed them. Idempotent. */
  async recordMembers(campaignId: string, clientIds: readonly string[], chunkSize: number): Promise<void> {
    for (let from = 0; from < clientIds.length; from += chunkSize) {
      const chunk = from / chunkSize;
      await insertNew(this.members, clientIds.slice(from, from + chunkSize).map((id) => ({ _id: targetKey(campaignId, id), chunk })));
    }
  }

  /**
   * Makes these devices members in `chunk` unless they are members already, and returns those of
   * them that belong to `chunk` (this call's or an earlier attempt's), in the order given.
   */
  async joinMembers(campaignId: string, clientIds: readonly string[], chunk: number): Promise<string[]> {
    if (clientIds.length === 0) return [];
    const keys = clientIds.map((id) => targetKey(campaignId, id));
    await insertNew(this.members, keys.map((_id) => ({ _id, chunk })));
    const mine = await this.members.find({ _id: { $in: keys }, chunk }, { projection: { _id: 1 } }).toArray();
    const inChunk = new Set(mine.map((m) => m._id));
    return clientIds.filter((_, i) => inChunk.has(keys[i] as string));
  }

  /** Which of these devices are members (targets) of the campaign already, and in which chunk. */
  async membersAmong(campaignId: string, clientIds: readonly string[]): Promise<Map<string, number>> {
    if (clientIds.length === 0) return new Map();
    const found = await this.members.find({ _id: { $in: clientIds.map((id) => targetKey(campaignId, id)) } }).toArray();
    return new Map(found.map((m) => [m._id.slice(campaignId.length + 1), m.chunk]));
  }

  /**
   * Writes a chunk of devices that joined a continuous campaign: the targets already in it (an
   * earlier attempt's) first, the new ones after, and an empty state if it has none. The workflow
   * launches nothing on the chunk before this returns, so the positions are still free to grow.
   */
  async writeJoinedChunk(campaignId: string, chunk: number, clientIds: readonly string[]): Promise<number> {
    const _id = chunkKey(campaignId, chunk);
    const existing = await this.chunks.findOne({ _id });
    const before = existing?.ids ? existing.ids.split('\n') : [];
    const ids = [...before, ...clientIds.filter((id) => !before.includes(id))];
    if (ids.length === 0) return 0;
    await this.chunks.replaceOne({ _id }, { campaignId, chunk, ids: ids.join('\n') }, { upsert: true });
    await insertNew(this.chunkStates, [
      { _id, campaignId, chunk, finishedRuns: '', open: '{}', effort: { attempted: 0, attempts: 0, transientErrors: 0 }, updatedAt: new Date().toISOString() },
    ]);
    return ids.length;
  }

  // ---- per-target records ----

  /** Inserts final records; one that exists already is kept (the first final outcome wins). */
  async recordFinalTargets(records: readonly CampaignTargetRecord[]): Promise<void> {
    await insertNew(this.targets, records.map(targetDocument));
  }

  async targetRecord(campaignId: string, clientId: string): Promise<CampaignTargetRecord | null> {
    const doc = await this.targets.findOne({ _id: targetKey(campaignId, clientId) });
    return doc ? recordOfDocument(doc) : null;
  }

  async targetRecords(campaignId: string): Promise<CampaignTargetRecord[]> {
    return (await this.targets.find(campaignRange(campaignId)).toArray()).map(recordOfDocument);
  }

  /** Every target in list order: its final record, or where it stands now. */
  async *results(campaignId: string, chunkCount: number): AsyncGenerator<CampaignResultRow> {
    const finals = new Map((await this.targetRecords(campaignId)).map((r) => [r.clientId, r]));
    for (let chunk = 0; chunk < chunkCount; chunk++) {
      const [targets, state] = await Promise.all([this.readChunkTargets(campaignId, chunk), this.chunkStateIfAny(campaignId, chunk)]);
      // An ended campaign has no states left: every target has its final record.
      const book = state ? new ChunkLedger(targets.length, state.ledger) : null;
      for (let i = 0; i < targets.length; i++) {
        const target = targets[i] as CampaignTarget;
        const record = book?.isOpen(i) ? undefined : finals.get(target.clientId);
        yield record ? recordRow(record) : resultRow(target, book?.stateAt(i));
      }
    }
  }

  // ---- waiting for reconnects ----

  async recordWaiting(entries: readonly WaitingEntry[]): Promise<void> {
    const since = new Date().toISOString();
    await insertNew(
      this.waiting,
      entries.map((e) => ({ _id: targetKey(e.campaignId, e.clientId), ...e, since })),
    );
  }

  async waitingEntry(campaignId: string, clientId: string): Promise<WaitingEntry | null> {
    const doc = await this.waiting.findOne({ _id: targetKey(campaignId, clientId) });
    return doc ? { campaignId: doc.campaignId, clientId: doc.clientId, chunk: doc.chunk, index: doc.index } : null;
  }

  /** Active campaigns in which this device has a target still waiting for it. */
  async campaignsAwaiting(clientId: string): Promise<string[]> {
    const entries = await this.waiting.find({ clientId }).toArray();
    const active = await this.activeCampaignIds([...new Set(entries.map((e) => e.campaignId))]);
    const awaiting: string[] = [];
    for (const entry of entries) {
      if (!active.has(entry.campaignId)) continue;
      const chunkState = await this.chunkStateIfAny(entry.campaignId, entry.chunk);
      if (!chunkState) continue; // ended meanwhile
      const state = new ChunkLedger(entry.index + 1, chunkState.ledger).stateAt(entry.index);
      if (state.status === 'waiting' || state.status === 'retrying') awaiting.push(entry.campaignId);
    }
    return awaiting;
  }

  async clearWaiting(campaignId: string): Promise<void> {
    await this.waiting.deleteMany(campaignRange(campaignId));
  }
}

let lastIso: [number, string] = [0, new Date(0).toISOString()];

/** Epoch ms as ISO 8601; the targets of one bulk request share their times, so the last is kept. */
function iso(ms: number | undefined): string | undefined {
  if (ms === undefined) return undefined;
  if (lastIso[0] !== ms) lastIso = [ms, new Date(ms).toISOString()];
  return lastIso[1];
}

/**
 * A target's stored record. FerretDB's cost per insert grows with every field (bench/campaign: a
 * fifth less without the two ids), so the ids live in `_id` only and `firstAttemptAt` is left out
 * when it equals `finishedAt` (one attempt, the common case).
 */
function targetDocument(record: CampaignTargetRecord): TargetDocument {
  const doc: TargetDocument = { _id: targetKey(record.campaignId, record.clientId), status: record.status, attempts: record.attempts } as TargetDocument;
  if (record.messageId !== undefined) doc.messageId = record.messageId;
  if (record.delivery !== undefined) doc.delivery = record.delivery;
  if (record.lastError !== undefined) doc.lastError = record.lastError;
  if (record.firstAttemptAt !== undefined && !(record.attempts === 1 && record.firstAttemptAt === record.finishedAt)) doc.firstAttemptAt = record.firstAttemptAt;
  doc.finishedAt = record.finishedAt;
  return doc;
}

function recordOfDocument(doc: TargetDocument): CampaignTargetRecord {
  const { _id, ...rest } = doc;
  const slash = _id.indexOf('/');
  const record: CampaignTargetRecord = { campaignId: _id.slice(0, slash), clientId: _id.slice(slash + 1), ...rest };
  if (record.attempts === 1 && record.firstAttemptAt === undefined) record.firstAttemptAt = record.finishedAt;
  return record;
}

function recordRow(record: CampaignTargetRecord): CampaignResultRow {
  const { campaignId: _, ...row } = record;
  return row;
}

export function resultRow(target: CampaignTarget, state: TargetState | undefined): CampaignResultRow {
  const s = state ?? { status: 'pending' as const, attempts: 0 };
  const row: CampaignResultRow = { clientId: target.clientId, status: s.status, attempts: s.attempts };
  if (s.messageId) row.messageId = s.messageId;
  if (s.delivery) row.delivery = s.delivery;
  if (s.lastError) row.lastError = s.lastError;
  const firstAt = iso(s.firstAt);
  if (firstAt) row.firstAttemptAt = firstAt;
  const finishedAt = iso(s.finishedAt);
  if (finishedAt) row.finishedAt = finishedAt;
  const nextAt = s.status === 'pending' || s.status === 'retrying' || s.status === 'waiting' ? iso(s.nextAt) : undefined;
  if (nextAt) row.nextAttemptAt = nextAt;
  return row;
}

/** The final record of a target that reached a final status. */
export function finalRecord(campaignId: string, clientId: string, state: TargetState): CampaignTargetRecord {
  const record: CampaignTargetRecord = { campaignId, clientId, status: state.status, attempts: state.attempts } as CampaignTargetRecord;
  if (state.messageId) record.messageId = state.messageId;
  if (state.delivery) record.delivery = state.delivery;
  if (state.lastError) record.lastError = state.lastError;
  const firstAt = iso(state.firstAt);
  if (firstAt) record.firstAttemptAt = firstAt;
  record.finishedAt = iso(state.finishedAt ?? Date.now()) as string;
  return record;
}
