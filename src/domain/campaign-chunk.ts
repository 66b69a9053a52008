import { emptyCounts, isFinal, type TargetCounts, type TargetStatus } from './campaign';
import { NEVER_ATTEMPTED, type TargetState } from './campaign-target-state';

/**
 * The working state of one chunk of targets, kept small on purpose: a final target is one letter
 * (its details are in its own final record), only open targets carry their full state, and the
 * effort of finished targets is summed. Pure; the publishing activity loads it, applies a batch's
 * outcomes and stores it back.
 */

const FINAL_LETTERS: Record<string, TargetStatus> = { d: 'delivered', o: 'offline', f: 'failed', t: 'timed_out', c: 'cancelled' };
const LETTER_OF: Partial<Record<TargetStatus, string>> = { delivered: 'd', offline: 'o', failed: 'f', timed_out: 't', cancelled: 'c' };
const OPEN = '.';

export interface Effort {
  /** Targets tried at least once. */
  attempted: number;
  attempts: number;
  transientErrors: number;
}

export interface ChunkLedgerData {
  /** One letter per target: `.` open, else its final status (d, o, f, t, c). */
  finished: string;
  /** Full states of targets tried but not final, by position. */
  open: Record<number, TargetState>;
  /** Summed over the finished targets. */
  effort: Effort;
}

export class ChunkLedger {
  private readonly letters: string[];
  private readonly open: Map<number, TargetState>;
  private readonly effort: Effort;

  constructor(
    readonly size: number,
    data?: ChunkLedgerData,
  ) {
    this.letters = (data?.finished ?? '').padEnd(size, OPEN).split('');
    this.open = new Map(Object.entries(data?.open ?? {}).map(([k, v]) => [Number(k), v]));
    this.effort = { ...(data?.effort ?? { attempted: 0, attempts: 0, transientErrors: 0 }) };
  }

  /** The state of a target; a finished one is known by status only (its record has the rest). */
  stateAt(position: number): TargetState {
    const letter = this.letters[position] ?? OPEN;
    if (letter !== OPEN) return { status: FINAL_LETTERS[letter] ?? 'cancelled', attempts: 0 };
    return this.open.get(position) ?? NEVER_ATTEMPTED;
  }

  isOpen(position: number): boolean {
    return (this.letters[position] ?? OPEN) === OPEN;
  }

  /** Records a new state; a final state closes the target. */
  set(position: number, state: TargetState): void {
    if (!isFinal(state.status)) {
      this.open.set(position, state);
      return;
    }
    this.letters[position] = LETTER_OF[state.status] ?? 'c';
    this.open.delete(position);
    if (state.attempts > 0) this.effort.attempted += 1;
    this.effort.attempts += state.attempts;
    this.effort.transientErrors += state.transientCount ?? 0;
  }

  openPositions(): number[] {
    const positions: number[] = [];
    for (let i = 0; i < this.size; i++) if (this.letters[i] === OPEN) positions.push(i);
    return positions;
  }

  counts(): TargetCounts {
    const counts = emptyCounts(this.size);
    for (const letter of this.letters) {
      if (letter === OPEN) continue;
      counts.pending -= 1;
      const status = FINAL_LETTERS[letter];
      if (status === 'delivered') counts.delivered += 1;
      else if (status === 'offline') counts.offline += 1;
      else if (status === 'failed') counts.failed += 1;
      else if (status === 'timed_out') counts.timedOut += 1;
      else counts.cancelled += 1;
    }
    for (const state of this.open.values()) if (state.status === 'waiting') counts.waiting += 1;
    return counts;
  }

  /** Earliest due time of an open target (0 = one was never tried); null when all are final. */
  nextDueAt(): number | null {
    let earliest: number | null = null;
    for (let i = 0; i < this.size; i++) {
      if (this.letters[i] !== OPEN) continue;
      const state = this.open.get(i);
      if (state === undefined) return 0;
      const at = state.nextAt ?? 0;
      if (earliest === null || at < earliest) earliest = at;
    }
    return earliest;
  }

  totalEffort(): Effort {
    const total = { ...this.effort };
    for (const state of this.open.values()) {
      if (state.attempts > 0) total.attempted += 1;
      total.attempts += state.attempts;
      total.transientErrors += state.transientCount ?? 0;
    }
    return total;
  }

  toData(): ChunkLedgerData {
    return { finished: this.letters.join(''), open: Object.fromEntries(this.open), effort: { ...this.effort } };
  }
}
