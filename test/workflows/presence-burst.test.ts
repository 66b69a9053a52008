import { temporal } from '@temporalio/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { presenceWorkflowId, type PresenceEvent } from '../../src/domain/presence';
import { deliverPresenceEvents } from '../../src/temporal/presence-delivery';
import { uniqueName, waitFor } from '../harness';
import { startPresenceEnv, type PresenceTestEnv } from '../support/presence-env';

/**
 * A device that reconnects in a loop can deliver tens of thousands of presence events at once (a
 * relay catching up, a worker restarting onto a long backlog). One workflow task must still finish
 * well inside the SDK's 2 s deadlock limit, or the worker fails the task on every attempt
 * (https://docs.temporal.io/develop/typescript/debugging#deadlock).
 */

let env: PresenceTestEnv;

beforeAll(async () => {
  env = await startPresenceEnv();
});

afterAll(async () => {
  await env?.close();
});

/** The event types of a run's history, read a few events per page: the burst's signals make the whole history larger than a gRPC message may be. */
async function eventTypes(workflowId: string, runId: string): Promise<temporal.api.enums.v1.EventType[]> {
  const types: temporal.api.enums.v1.EventType[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const page = await env.temporal.workflowService.getWorkflowExecutionHistory({
      namespace: env.temporal.options.namespace,
      execution: { workflowId, runId },
      maximumPageSize: 2,
      ...(nextPageToken ? { nextPageToken } : {}),
    });
    for (const event of page.history?.events ?? []) if (event.eventType) types.push(event.eventType);
    nextPageToken = page.nextPageToken?.length ? page.nextPageToken : undefined;
  } while (nextPageToken);
  return types;
}

describe('presence burst', () => {
  it('survives 50,000 events for one client id in one workflow task, and ends with the right presence', async () => {
    const clientId = 'burst-1';
    // The default flap window (ALARM_FLAP_WINDOW, 10 minutes) holds the whole burst.
    const alarmPolicy = { graceMs: 600_000, escalationMs: [], flapThreshold: 5, flapWindowMs: 600_000 };
    await env.ops.provision({ clientId, password: `${clientId}-password`, acl: [], subscriptions: [], alarmPolicy });
    // 25,000 sessions 20 ms apart: every one ends inside the flap window.
    const sessions = 25_000;
    const base = Date.now() - sessions * 20;
    const events: PresenceEvent[] = [];
    for (let i = 0; i < sessions; i++) {
      const connectedAt = base + i * 20;
      events.push({ kind: 'connected', key: `${clientId}|connected|${connectedAt}`, connectedAt });
      events.push({ kind: 'disconnected', key: `${clientId}|disconnected|${connectedAt}`, connectedAt, disconnectedAt: connectedAt + 10, reason: 'keepalive_timeout' });
    }
    const last = base + (sessions - 1) * 20;

    // Every signal is sent before a worker polls the queue, so the first workflow task carries all of them.
    const taskQueue = uniqueName('presence-burst');
    const perSignal = 5_000;
    for (let i = 0; i < events.length; i += perSignal) {
      await deliverPresenceEvents(env.temporal, { clientId, taskQueue, events: events.slice(i, i + perSignal) });
    }
    const handle = env.temporal.workflow.getHandle(presenceWorkflowId(clientId));
    const firstRun = (await handle.describe()).runId;
    const worker = await env.extraWorker(env.emqx, { taskQueue });
    try {
      const view = await waitFor(
        async () => {
          const v = await env.ops.presenceOf(clientId);
          return v?.counters.events === events.length ? v : null;
        },
        { timeoutMs: 60_000, what: 'all 50,000 events applied' },
      );
      expect(view).toMatchObject({ presence: 'offline', connectedAt: new Date(last).toISOString(), reason: 'keepalive_timeout' });
      expect(view.alarm).toMatchObject({ kind: 'flapping', state: 'active', level: 1 });
      expect(view.counters.coalesced).toBeGreaterThan(0);

      // The run that received the burst failed no workflow task (a deadlock fails the task, then every retry).
      const types = await eventTypes(presenceWorkflowId(clientId), firstRun);
      const count = (type: temporal.api.enums.v1.EventType): number => types.filter((t) => t === type).length;
      const { EventType } = temporal.api.enums.v1;
      expect(count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED)).toBe(events.length / perSignal);
      expect(count(EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED) + count(EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT)).toBe(0);
      expect(count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)).toBeGreaterThan(0);
    } finally {
      // Rejects if the worker died.
      await worker.stop();
    }
  });
});
