import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { startHttpProcess, startWorkerProcess } from '../devstack/app-processes';
import { freePort, type ServiceProcess } from '../devstack/services';
import { parseDurationMs, projectRoot } from '../src/config';
import { memoryOf, round } from './cpu';
import { startBenchStack } from './stack';

/**
 * bench/soak: the webhook adapter and a worker (each its own process) under steady mixed traffic
 * for SOAK_DURATION (default 30m), with outages injected every SOAK_OUTAGE_EVERY (default 3m),
 * alternately Temporal frozen for SOAK_TEMPORAL_OUTAGE (45s) and FerretDB frozen for
 * SOAK_MONGO_OUTAGE (20s), by SIGSTOP/SIGCONT. Senders behave as EMQX: each event is posted again
 * after a 503 until it is accepted. At the end every accepted event must have reached its device
 * workflow: reports accepted, applied, lost (must be 0), worker and adapter exits (must be 0),
 * memory at start and end.
 */

const TOKEN = randomBytes(16).toString('hex');

function setting(name: string, fallback: string): number {
  return parseDurationMs(process.env[name] ?? fallback);
}

function progress(message: string): void {
  console.error(`[bench soak] ${message}`);
}

export async function benchSoak(): Promise<Record<string, unknown>> {
  const durationMs = setting('SOAK_DURATION', '30m');
  const outageEveryMs = setting('SOAK_OUTAGE_EVERY', '3m');
  const temporalOutageMs = setting('SOAK_TEMPORAL_OUTAGE', '45s');
  const mongoOutageMs = setting('SOAK_MONGO_OUTAGE', '20s');
  const devices = Number(process.env.SOAK_DEVICES ?? 200);
  const senders = Number(process.env.SOAK_SENDERS ?? 8);

  const stack = await startBenchStack({ inProcessWorker: false });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'device-ops-soak-'));
  const root = projectRoot();
  const port = await freePort();
  const env = {
    ...process.env,
    ...stack.env,
    DEVICE_OPS_ENV_FILE: path.join(dir, 'no-env-file'),
    PRESENCE_RECONCILE_INTERVAL: '1h',
    // The simulated devices are not provisioned: track them as if they were (docs/presence.md), or
    // no device workflow applies their events and nothing is measured.
    PRESENCE_TRACK_PATTERN: 'soak-[0-9]+',
    STATS_SNAPSHOT_INTERVAL: '1h',
    LOG_LEVEL: 'WARN',
    WEBHOOK_HOST: '127.0.0.1',
    WEBHOOK_PORT: String(port),
    WEBHOOK_TOKEN: TOKEN,
  };
  const [worker, adapter] = await Promise.all([
    startWorkerProcess({ root, env, logDir: dir }),
    startHttpProcess({ name: 'webhook', entry: 'src/webhook/main.ts', root, env, logDir: dir, baseUrl: `http://127.0.0.1:${port}` }),
  ]);
  const exits = { worker: 0, adapter: 0 };
  worker.child.once('exit', () => exits.worker++);
  adapter.child.once('exit', () => exits.adapter++);
  const memory = (): Record<string, unknown> => ({ worker: memoryOf(worker), adapter: memoryOf(adapter) });
  const memoryAtStart = memory();
  const url = `http://127.0.0.1:${port}/emqx/events`;
  const ids = Array.from({ length: devices }, (_, i) => `soak-${i}`);
  /** Sessions accepted per device (a connect and a disconnect each). */
  const sessions = new Map<string, number>(ids.map((id) => [id, 0]));
  const counts = { accepted: 0, answers503: 0, subscribeEvents: 0, maxAcceptMs: 0 };

  const post = async (body: unknown): Promise<void> => {
    const started = Date.now();
    for (;;) {
      const status = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` }, body: JSON.stringify(body) })
        .then(async (res) => {
          await res.body.dump();
          return res.statusCode;
        })
        .catch(() => 0);
      if (status === 200) break;
      if (status === 503) counts.answers503++;
      await new Promise((r) => setTimeout(r, 1_000));
    }
    counts.maxAcceptMs = Math.max(counts.maxAcceptMs, Date.now() - started);
  };

  const endAt = Date.now() + durationMs;
  // Event times start now, as EMQX's do: the worker's retention sweep (RETENTION_EVENTS, 30 days)
  // deletes stored events older than that, and would count as lost whatever it removed.
  const firstConnectAt = Date.now();
  let next = 0;
  const send = async (): Promise<void> => {
    while (Date.now() < endAt) {
      const id = ids[next++ % ids.length] as string;
      const n = sessions.get(id) ?? 0;
      const connectedAt = firstConnectAt + n * 10;
      // Mixed: a session (connect, subscribe, disconnect) per post.
      await post([
        { event: 'client.connected', clientid: id, connected_at: connectedAt },
        { event: 'session.subscribed', clientid: id, topic: `soak/${id}/cmd`, qos: 1, timestamp: connectedAt + 1 },
        { event: 'client.disconnected', clientid: id, connected_at: connectedAt, disconnected_at: connectedAt + 5, reason: 'normal' },
      ]);
      sessions.set(id, n + 1);
      counts.accepted += 3;
      counts.subscribeEvents++;
    }
  };

  const outages: { kind: string; atS: number; seconds: number }[] = [];
  const startedAt = Date.now();
  const inject = async (): Promise<void> => {
    let turn = 0;
    for (let at = startedAt + outageEveryMs; at + 5_000 < endAt; at += outageEveryMs) {
      await new Promise((r) => setTimeout(r, Math.max(0, at - Date.now())));
      const temporal = turn++ % 2 === 0;
      const pid = temporal ? stack.pids.temporal : stack.pids.ferretdb;
      const ms = Math.min(temporal ? temporalOutageMs : mongoOutageMs, endAt - Date.now());
      if (!pid) continue;
      progress(`freezing ${temporal ? 'Temporal' : 'FerretDB'} for ${ms / 1_000} s`);
      process.kill(pid, 'SIGSTOP');
      await new Promise((r) => setTimeout(r, ms));
      process.kill(pid, 'SIGCONT');
      outages.push({ kind: temporal ? 'temporal' : 'mongodb', atS: round((at - startedAt) / 1_000), seconds: round(ms / 1_000) });
    }
  };

  progress(`${devices} devices, ${senders} senders, ${durationMs / 1_000} s, an outage every ${outageEveryMs / 1_000} s`);
  await Promise.all([inject(), ...Array.from({ length: senders }, send)]);
  progress(`traffic over: ${counts.accepted} events accepted; waiting for the workflows`);

  // Every accepted session applied by its workflow: started and ended once each.
  const applied = async (): Promise<number> => {
    let total = 0;
    for (const id of ids) {
      const view = await stack.ops.presenceOf(id).catch(() => null);
      total += Math.min(view?.counters.sessionsStarted ?? 0, sessions.get(id) ?? 0) + Math.min(view?.counters.sessionsEnded ?? 0, sessions.get(id) ?? 0);
    }
    return total;
  };
  const acceptedPresence = [...sessions.values()].reduce((a, b) => a + b, 0) * 2;
  const settleDeadline = Date.now() + 5 * 60_000;
  let appliedPresence = await applied();
  while (appliedPresence < acceptedPresence && Date.now() < settleDeadline) {
    await new Promise((r) => setTimeout(r, 2_000));
    appliedPresence = await applied();
  }
  const subscribesStored = await stack.history.db.collection('device_events').countDocuments({ event: 'session.subscribed' });
  const result = {
    name: 'soak',
    durationS: round(durationMs / 1_000),
    devices,
    outages,
    events: {
      accepted: counts.accepted,
      presenceAccepted: acceptedPresence,
      presenceApplied: appliedPresence,
      subscribesAccepted: counts.subscribeEvents,
      subscribesStored,
      lost: acceptedPresence - appliedPresence + (counts.subscribeEvents - subscribesStored),
    },
    answers503: counts.answers503,
    longestAcceptMs: counts.maxAcceptMs,
    workerExits: exits.worker,
    adapterExits: exits.adapter,
    memoryMb: { start: memoryAtStart, end: memory() },
  };
  await Promise.all([worker, adapter].map((p: ServiceProcess) => p.stop()));
  await stack.close();
  rmSync(dir, { recursive: true, force: true });
  return result;
}
