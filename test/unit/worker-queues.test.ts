import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config';
import { workerQueues } from '../../src/worker';

const queuesOf = (env: Record<string, string>) => workerQueues(loadConfig(['temporal', 'worker'], env));

describe('worker task queues', () => {
  it('polls the operations and the presence queue by default, each with its own limits', () => {
    expect(queuesOf({ WORKER_PRESENCE_MAX_WORKFLOW_TASKS: '8', WORKER_PRESENCE_MAX_ACTIVITIES: '16' })).toEqual([
      { role: 'operations', taskQueue: 'device-ops', maxWorkflowTasks: 40, maxActivities: 100 },
      { role: 'presence', taskQueue: 'device-ops-presence', maxWorkflowTasks: 8, maxActivities: 16 },
    ]);
  });

  it('runs one role when told, so the two pools scale apart', () => {
    expect(queuesOf({ WORKER_ROLES: 'presence', TEMPORAL_PRESENCE_TASK_QUEUE: 'p' })).toEqual([{ role: 'presence', taskQueue: 'p', maxWorkflowTasks: 40, maxActivities: 100 }]);
    expect(queuesOf({ WORKER_ROLES: ' operations , operations' }).map((q) => q.role)).toEqual(['operations']);
  });

  it('serves both roles with one worker when both queues have the same name', () => {
    expect(queuesOf({ TEMPORAL_TASK_QUEUE: 'one', TEMPORAL_PRESENCE_TASK_QUEUE: 'one' })).toEqual([{ role: 'operations', taskQueue: 'one', maxWorkflowTasks: 40, maxActivities: 100 }]);
  });

  it('refuses an unknown role or an empty list, naming the variable', () => {
    for (const roles of ['operations,alarms', ',']) {
      let error: unknown;
      try {
        queuesOf({ WORKER_ROLES: roles });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems.join('\n')).toMatch(/^WORKER_ROLES(\.\d+)?: /m);
    }
  });
});
