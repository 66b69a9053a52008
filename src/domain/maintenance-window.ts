/**
 * Maintenance windows (`--window "<cron> <duration>"`, docs/campaigns.md): a rollout runs only while one
 * is open. The cron expression (five fields: minute hour day-of-month month day-of-week, in UTC)
 * says when a window opens; the duration, 1 to 1,430 minutes as AWS IoT Jobs allows
 * (https://docs.aws.amazon.com/iot/latest/apireference/API_MaintenanceWindow.html), how long it
 * stays open. Pure and workflow-safe: a workflow computes its next wake-up with it.
 */

export interface MaintenanceWindow {
  /** The text it was parsed from, for messages and the UI memo. */
  spec: string;
  minutes: readonly number[];
  hours: readonly number[];
  daysOfMonth: readonly number[];
  months: readonly number[];
  daysOfWeek: readonly number[];
  /** Whether day-of-month and day-of-week were both restricted (cron then matches either). */
  eitherDay: boolean;
  durationMs: number;
}

export class MaintenanceWindowError extends Error {
  readonly type = 'MaintenanceWindowError';
}

export const MIN_WINDOW_MINUTES = 1;
export const MAX_WINDOW_MINUTES = 1_430;

const MINUTE = 60_000;
const DAY = 86_400_000;

const FIELDS = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'day of week', min: 0, max: 7 },
] as const;

/** `"0 1 * * * 3h"`, `"30 22 * * 1-5 90m"`, `"0 2 1 * * 2h30m"`; throws MaintenanceWindowError naming the part and the reason. */
export function parseMaintenanceWindow(spec: string): MaintenanceWindow {
  const parts = spec.trim().split(/\s+/);
  if (parts.length !== 6) throw new MaintenanceWindowError(`window "${spec}": expected "<minute> <hour> <day of month> <month> <day of week> <duration>", e.g. "0 1 * * * 3h"`);
  const values = FIELDS.map((field, i) => parseCronField(parts[i] as string, field, spec));
  const durationMs = parseWindowDuration(parts[5] as string, spec);
  const [minutes, hours, daysOfMonth, months, weekdays] = values as [number[], number[], number[], number[], number[]];
  // 7 is Sunday as well as 0.
  const daysOfWeek = [...new Set(weekdays.map((d) => d % 7))].sort((a, b) => a - b);
  return { spec, minutes, hours, daysOfMonth, months, daysOfWeek, eitherDay: parts[2] !== '*' && parts[4] !== '*', durationMs };
}

function parseCronField(text: string, field: (typeof FIELDS)[number], spec: string): number[] {
  const fail = (reason: string): never => {
    throw new MaintenanceWindowError(`window "${spec}": ${field.name} "${text}" ${reason}`);
  };
  const values = new Set<number>();
  for (const item of text.split(',')) {
    const match = /^(\*|\d+)(?:-(\d+))?(?:\/(\d+))?$/.exec(item);
    if (!match) fail(`must be *, a number, a range a-b, a list a,b or a step */n (${field.min}-${field.max})`);
    const [, start = '', end, step] = match as RegExpExecArray;
    const from = start === '*' ? field.min : Number(start);
    const to = start === '*' ? field.max : end !== undefined ? Number(end) : step !== undefined ? field.max : from;
    const by = step !== undefined ? Number(step) : 1;
    if (from < field.min || to > field.max || from > to) fail(`must be within ${field.min}-${field.max}`);
    if (by < 1) fail('has a step of 0');
    for (let v = from; v <= to; v += by) values.add(v);
  }
  return [...values].sort((a, b) => a - b);
}

function parseWindowDuration(text: string, spec: string): number {
  const match = /^(?:(\d+)h)?(?:(\d+)m)?$/.exec(text);
  const minutes = match && (match[1] !== undefined || match[2] !== undefined) ? Number(match[1] ?? 0) * 60 + Number(match[2] ?? 0) : NaN;
  if (!Number.isInteger(minutes)) throw new MaintenanceWindowError(`window "${spec}": duration "${text}" must be minutes or hours, e.g. 90m, 3h, 2h30m`);
  if (minutes < MIN_WINDOW_MINUTES || minutes > MAX_WINDOW_MINUTES) {
    throw new MaintenanceWindowError(`window "${spec}": duration "${text}" must be ${MIN_WINDOW_MINUTES} to ${MAX_WINDOW_MINUTES} minutes`);
  }
  return minutes * MINUTE;
}

function dayMatches(window: MaintenanceWindow, day: Date): boolean {
  if (!window.months.includes(day.getUTCMonth() + 1)) return false;
  const dom = window.daysOfMonth.includes(day.getUTCDate());
  const dow = window.daysOfWeek.includes(day.getUTCDay());
  return window.eitherDay ? dom || dow : dom && dow;
}

/** Window starts (epoch ms) from `from` (inclusive) to `to` (exclusive), in order. */
function* startsBetween(window: MaintenanceWindow, from: number, to: number): Generator<number> {
  for (let day = Math.floor(from / DAY) * DAY; day < to; day += DAY) {
    if (!dayMatches(window, new Date(day))) continue;
    for (const hour of window.hours) {
      for (const minute of window.minutes) {
        const start = day + hour * 3_600_000 + minute * MINUTE;
        if (start >= from && start < to) yield start;
      }
    }
  }
}

/** Far enough to find the next start of any valid expression (29 February comes every four years, or eight across 2100). */
const SEARCH_LIMIT_MS = 8 * 366 * DAY;

/** The first start at or after `from`, or null if the expression never matches (e.g. 31 February). */
function nextStart(window: MaintenanceWindow, from: number): number | null {
  for (const start of startsBetween(window, from, from + SEARCH_LIMIT_MS)) return start;
  return null;
}

export type WindowState = { open: true; closesAt: number } | { open: false; opensAt: number | null; closesAt: number | null };

/**
 * Whether any window is open at `at`, and when that changes. Overlapping or touching windows count
 * as one: `closesAt` is when no window is open any more.
 */
export function windowStateAt(windows: readonly MaintenanceWindow[], at: number): WindowState {
  const openUntil = closingAfter(windows, at);
  if (openUntil !== null) return { open: true, closesAt: openUntil };
  const starts = windows.map((w) => nextStart(w, at)).filter((s): s is number => s !== null);
  if (starts.length === 0) return { open: false, opensAt: null, closesAt: null };
  const opensAt = Math.min(...starts);
  return { open: false, opensAt, closesAt: closingAfter(windows, opensAt) };
}

/** When the windows open at `at` all close, or null if none is open at `at`. */
function closingAfter(windows: readonly MaintenanceWindow[], at: number): number | null {
  let until: number | null = null;
  // Each round extends the end by windows that open before it; bounded, as windows are at most 1,430 minutes.
  for (let round = 0; round < 1_000; round++) {
    const edge: number = until ?? at;
    let extended = false;
    for (const window of windows) {
      for (const start of startsBetween(window, edge - window.durationMs + 1, edge + 1)) {
        const end: number = start + window.durationMs;
        if (end > (until ?? at) && (until !== null || start <= at)) {
          until = end;
          extended = true;
        }
      }
    }
    if (!extended) return until;
  }
  return until;
}
