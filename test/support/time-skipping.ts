import { Context } from '@temporalio/activity';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, DefaultLogger, Worker, type WorkflowBundle } from '@temporalio/worker';
import { inject } from 'vitest';
import type { Activities } from '../../src/activities';
import { temporal } from '@temporalio/proto';
import { ALL_SEARCH_ATTRIBUTES } from '../../src/domain/search-attributes';
import { workflowsPath } from '../../src/worker';
import { uniqueName } from '../harness';

/**
 * Timer tests on Temporal's time-skipping test server (installed by test/harness/global-setup.ts):
 * the server jumps workflow time to the next timer whenever no workflow task or activity is running,
 * so a 15-minute grace period takes milliseconds. The workflows are the worker's own (bundled from
 * src/workflows/index.ts); the activities are typed fakes that record every call with the test
 * server's time.
 */

/** One recorded activity call; `at` is when the workflow scheduled it, in the test server's time. */
export interface ActivityCall<K extends keyof Activities = keyof Activities> {
  name: K;
  input: Parameters<Activities[K]>[0];
  at: number;
}

/** Fakes for the activities a test needs, each typed as the real one; `now` is the call's scheduled time. */
export type FakeActivities = {
  [K in keyof Activities]?: (input: Parameters<Activities[K]>[0], now: number) => ReturnType<Activities[K]> | Awaited<ReturnType<Activities[K]>>;
};

export interface TimeSkippingEnv {
  env: TestWorkflowEnvironment;
  taskQueue: string;
  calls: ActivityCall[];
  /** The recorded calls of one activity, oldest first. */
  callsOf<K extends keyof Activities>(name: K): ActivityCall<K>[];
  /** Stops the worker (rejecting if it failed) and the server. */
  close(): Promise<void>;
}

let bundle: Promise<WorkflowBundle> | undefined;

/** The worker's workflow code, bundled once per test file. */
function workflowBundle(): Promise<WorkflowBundle> {
  return (bundle ??= bundleWorkflowCode({ workflowsPath: workflowsPath(), logger: new DefaultLogger('WARN') }));
}

/** A test server and a worker on its own task queue with `fakes` as its activities. */
export async function startTimeSkipping(fakes: FakeActivities): Promise<TimeSkippingEnv> {
  const env = await TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path: inject('temporalTestServerPath') } } });
  // The workflows upsert the project's search attributes and the test server refuses unknown ones;
  // it implements AddSearchAttributes but not the listing src/temporal/search-attribute-setup.ts starts with.
  const indexed = { KEYWORD: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD, INT: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT };
  await env.connection.operatorService.addSearchAttributes({
    namespace: env.namespace ?? 'default',
    searchAttributes: Object.fromEntries(ALL_SEARCH_ATTRIBUTES.map((key) => [key.name, indexed[key.type]])),
  });
  const taskQueue = uniqueName('timeskip');
  const calls: ActivityCall[] = [];
  const activities = Object.fromEntries(
    Object.entries(fakes).map(([name, fake]) => [
      name,
      async (input: unknown) => {
        const at = Context.current().info.currentAttemptScheduledTimestampMs;
        calls.push({ name, input, at } as ActivityCall);
        return await (fake as (input: unknown, now: number) => unknown)(input, at);
      },
    ]),
  );
  const worker = await Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: await workflowBundle(), activities });
  const running = worker.run();
  return {
    env,
    taskQueue,
    calls,
    callsOf: <K extends keyof Activities>(name: K) => calls.filter((c): c is ActivityCall<K> => c.name === name),
    async close() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      try {
        await running;
      } finally {
        await env.teardown();
      }
    },
  };
}
