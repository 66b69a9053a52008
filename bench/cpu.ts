import { readdirSync, readFileSync } from 'node:fs';
import type { ServiceProcess } from '../devstack/services';

/**
 * What the benchmark's processes use, from /proc (Linux): CPU seconds of a process and its
 * descendants (benchmarks take the difference over a run to show where the machine's cores went)
 * and memory.
 */

/** One decimal, for reported figures. */
export function round(n: number): number {
  return Math.round(n * 10) / 10;
}

/** Resident and peak resident memory of a child process, in MB. */
export function memoryOf(service: ServiceProcess): { rssMb: number; peakMb: number } | null {
  const pid = service.child.pid;
  if (!pid) return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
    return { rssMb: round(kb('VmRSS') / 1024), peakMb: round(kb('VmHWM') / 1024) };
  } catch {
    return null;
  }
}

const TICKS_PER_SECOND = 100;

interface ProcStat {
  ppid: number;
  ticks: number;
}

function readStat(pid: number): ProcStat | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name is in parentheses and may hold spaces: fields are counted after the last ')'.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // After the name: state(0) ppid(1) ... utime(11) stime(12).
    return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
  } catch {
    return null;
  }
}

/** Every process's parent and CPU ticks, read once. */
function readAllStats(): Map<number, ProcStat> {
  const stats = new Map<number, ProcStat>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    const stat = readStat(pid);
    if (stat) stats.set(pid, stat);
  }
  return stats;
}

/** CPU seconds of each named process and its descendants, leaving out the subtrees of the other named ones. */
function cpuSecondsOf(pids: Record<string, number | undefined>): Map<string, number> {
  const stats = readAllStats();
  const children = new Map<number, number[]>();
  for (const [pid, stat] of stats) children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), pid]);
  const named = new Set(Object.values(pids).filter((pid): pid is number => pid !== undefined));
  const seconds = new Map<string, number>();
  for (const [name, root] of Object.entries(pids)) {
    let ticks = 0;
    const pending = root ? [root] : [];
    while (pending.length > 0) {
      const pid = pending.pop() as number;
      ticks += stats.get(pid)?.ticks ?? 0;
      for (const child of children.get(pid) ?? []) if (!named.has(child)) pending.push(child);
    }
    seconds.set(name, ticks / TICKS_PER_SECOND);
  }
  return seconds;
}

/**
 * Measures the CPU seconds each named process tree uses between `start()` and `stop()`. A named
 * process inside another's tree (the servers are the benchmark's children) counts only under its
 * own name.
 */
export function cpuMeter(pids: Record<string, number | undefined>): { stop(): Record<string, number> } {
  const before = cpuSecondsOf(pids);
  return {
    stop() {
      const after = cpuSecondsOf(pids);
      const used: Record<string, number> = {};
      for (const name of Object.keys(pids)) used[name] = round((after.get(name) ?? 0) - (before.get(name) ?? 0));
      return used;
    },
  };
}
