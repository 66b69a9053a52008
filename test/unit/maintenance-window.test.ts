import { describe, expect, it } from 'vitest';
import { parseMaintenanceWindow, windowStateAt } from '../../src/domain/maintenance-window';

/** Maintenance windows (src/domain/maintenance-window.ts): "<cron> <duration>", in UTC. */

const t = (iso: string): number => Date.parse(iso);
const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

function stateAt(specs: string[], at: string) {
  const state = windowStateAt(specs.map(parseMaintenanceWindow), t(at));
  return state.open ? { open: true, closesAt: iso(state.closesAt) } : { open: false, opensAt: iso(state.opensAt), closesAt: iso(state.closesAt) };
}

describe('maintenance windows', () => {
  it('a daily window from 01:00 for 3 h: open inside, closed outside, with the next change', () => {
    const daily = ['0 1 * * * 3h'];
    expect(stateAt(daily, '2026-03-10T00:59:59.999Z')).toEqual({ open: false, opensAt: '2026-03-10T01:00:00.000Z', closesAt: '2026-03-10T04:00:00.000Z' });
    expect(stateAt(daily, '2026-03-10T01:00:00.000Z')).toEqual({ open: true, closesAt: '2026-03-10T04:00:00.000Z' });
    expect(stateAt(daily, '2026-03-10T03:59:59.999Z')).toEqual({ open: true, closesAt: '2026-03-10T04:00:00.000Z' });
    expect(stateAt(daily, '2026-03-10T04:00:00.000Z')).toEqual({ open: false, opensAt: '2026-03-11T01:00:00.000Z', closesAt: '2026-03-11T04:00:00.000Z' });
  });

  it('a window open across midnight and the end of a month', () => {
    expect(stateAt(['30 22 * * * 4h'], '2026-01-31T23:30:00.000Z')).toEqual({ open: true, closesAt: '2026-02-01T02:30:00.000Z' });
    expect(stateAt(['30 22 * * * 4h'], '2026-02-01T01:00:00.000Z')).toEqual({ open: true, closesAt: '2026-02-01T02:30:00.000Z' });
  });

  it('weekdays, lists, ranges and steps', () => {
    // 2026-03-14 is a Saturday: the next weekday window is Monday's.
    expect(stateAt(['0 2 * * 1-5 1h'], '2026-03-14T12:00:00.000Z')).toMatchObject({ open: false, opensAt: '2026-03-16T02:00:00.000Z' });
    expect(stateAt(['0 2 * * 0 1h'], '2026-03-14T12:00:00.000Z')).toMatchObject({ opensAt: '2026-03-15T02:00:00.000Z' });
    expect(stateAt(['0 2 * * 7 1h'], '2026-03-14T12:00:00.000Z')).toMatchObject({ opensAt: '2026-03-15T02:00:00.000Z' });
    expect(stateAt(['*/15 * * * * 5m'], '2026-03-14T12:07:00.000Z')).toMatchObject({ opensAt: '2026-03-14T12:15:00.000Z', closesAt: '2026-03-14T12:20:00.000Z' });
    expect(stateAt(['0 3,15 * * * 30m'], '2026-03-14T12:00:00.000Z')).toMatchObject({ opensAt: '2026-03-14T15:00:00.000Z' });
    expect(stateAt(['0 0 29 2 * 2h'], '2026-03-01T00:00:00.000Z')).toMatchObject({ opensAt: '2028-02-29T00:00:00.000Z' });
  });

  it('day of month and day of week both given: either matches, as in cron', () => {
    // The 20th (a Friday) or any Monday.
    expect(stateAt(['0 1 20 * 1 1h'], '2026-03-17T00:00:00.000Z')).toMatchObject({ opensAt: '2026-03-20T01:00:00.000Z' });
    expect(stateAt(['0 1 20 * 1 1h'], '2026-03-20T02:00:00.000Z')).toMatchObject({ opensAt: '2026-03-23T01:00:00.000Z' });
  });

  it('several windows: the nearest opens first; overlapping or touching ones close together', () => {
    expect(stateAt(['0 1 * * * 2h', '0 13 * * * 1h'], '2026-03-10T05:00:00.000Z')).toMatchObject({ opensAt: '2026-03-10T13:00:00.000Z' });
    expect(stateAt(['0 1 * * * 2h', '0 2 * * * 2h'], '2026-03-10T01:30:00.000Z')).toEqual({ open: true, closesAt: '2026-03-10T04:00:00.000Z' });
    expect(stateAt(['0 1 * * * 2h', '0 3 * * * 1h'], '2026-03-10T01:30:00.000Z')).toEqual({ open: true, closesAt: '2026-03-10T04:00:00.000Z' });
    expect(stateAt(['0 1 * * * 2h', '0 3 * * * 1h'], '2026-03-10T00:00:00.000Z')).toEqual({ open: false, opensAt: '2026-03-10T01:00:00.000Z', closesAt: '2026-03-10T04:00:00.000Z' });
  });

  it('an expression that never matches has no next window', () => {
    expect(stateAt(['0 1 31 2 * 1h'], '2026-03-10T00:00:00.000Z')).toEqual({ open: false, opensAt: null, closesAt: null });
  });

  it('durations are 1 to 1,430 minutes, as AWS IoT Jobs allows', () => {
    expect(parseMaintenanceWindow('0 1 * * * 2h30m').durationMs).toBe(150 * 60_000);
    expect(parseMaintenanceWindow('0 1 * * * 1430m').durationMs).toBe(1_430 * 60_000);
    expect(parseMaintenanceWindow('0 1 * * * 1m').durationMs).toBe(60_000);
    expect(() => parseMaintenanceWindow('0 1 * * * 1431m')).toThrow('window "0 1 * * * 1431m": duration "1431m" must be 1 to 1430 minutes');
    expect(() => parseMaintenanceWindow('0 1 * * * 24h')).toThrow('must be 1 to 1430 minutes');
    expect(() => parseMaintenanceWindow('0 1 * * * 0m')).toThrow('must be 1 to 1430 minutes');
    expect(() => parseMaintenanceWindow('0 1 * * * 3 hours')).toThrow('expected "<minute> <hour> <day of month> <month> <day of week> <duration>"');
    expect(() => parseMaintenanceWindow('0 1 * * * 90s')).toThrow('duration "90s" must be minutes or hours, e.g. 90m, 3h, 2h30m');
  });

  it('bad cron fields are named with the reason', () => {
    expect(() => parseMaintenanceWindow('60 1 * * * 1h')).toThrow('window "60 1 * * * 1h": minute "60" must be within 0-59');
    expect(() => parseMaintenanceWindow('0 1 * 13 * 1h')).toThrow('month "13" must be within 1-12');
    expect(() => parseMaintenanceWindow('0 5-2 * * * 1h')).toThrow('hour "5-2" must be within 0-23');
    expect(() => parseMaintenanceWindow('0 */0 * * * 1h')).toThrow('hour "*/0" has a step of 0');
    expect(() => parseMaintenanceWindow('0 1 ? * MON 1h')).toThrow('day of month "?" must be *, a number');
  });
});
