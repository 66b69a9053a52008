import { mapPooled } from '../src/activities/failures';
import { startDeviceAgent, type DeviceAgent } from '../examples/device-agent/agent';
import { answerParentCommands } from './child-commands';

/**
 * Device agents (examples/device-agent/agent.ts) for bench/jobs.ts, in a process of their own
 * (forked with an IPC channel; the benchmark spreads its fleet over several, so one event loop
 * does not hold every connection). Each agent answers a job IN_PROGRESS at each of the `progress`
 * steps it is given (none: straight away) and then SUCCEEDED, except jobs whose id starts with
 * `silentPrefix`, which it takes without answering (the fire-and-forget run).
 * Commands: connect (every id, password `<id>-pw`), jobs (the job messages each agent received:
 * first copies and repeats apart, and the reports it published), close.
 */

type Command = { cmd: 'connect'; url: string; ids: string[]; silentPrefix: string; progress: number[] } | { cmd: 'jobs' } | { cmd: 'close' };

let agents: DeviceAgent[] = [];

/** A connect that fails (CONNACK late on a loaded machine) is tried again this many times. */
const CONNECT_ATTEMPTS = 5;

async function connectOne(url: string, id: string, silentPrefix: string, progress: number[]): Promise<DeviceAgent> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startDeviceAgent({
        url,
        clientId: id,
        password: `${id}-pw`,
        jobs: { behaviour: (jobId) => (jobId.startsWith(silentPrefix) ? 'ignore' : 'succeed'), progress },
      });
    } catch (err) {
      if (attempt >= CONNECT_ATTEMPTS) throw err;
    }
  }
}

async function handle(command: Command): Promise<Record<string, unknown>> {
  const started = performance.now();
  let extra: Record<string, unknown> = {};
  switch (command.cmd) {
    case 'connect':
      agents = await mapPooled(command.ids, 100, (id) => connectOne(command.url, id, command.silentPrefix, command.progress));
      break;
    case 'jobs': {
      // Per job id: agents that got it, extra copies (QoS 1 redeliveries), reports published.
      const jobs: Record<string, { devices: number; repeats: number; reports: number }> = {};
      for (const agent of agents) {
        const seen = new Set<string>();
        for (const jobId of agent.jobs) {
          const entry = (jobs[jobId] ??= { devices: 0, repeats: 0, reports: 0 });
          if (seen.has(jobId)) entry.repeats += 1;
          else entry.devices += 1;
          seen.add(jobId);
        }
        for (const { topic } of agent.published) {
          const jobId = topic.split('/').at(-2);
          if (jobId && jobs[jobId]) jobs[jobId].reports += 1;
        }
      }
      extra = { jobs };
      break;
    }
    case 'close':
      await mapPooled(agents, 500, (agent) => agent.stop().catch(() => undefined));
      agents = [];
      break;
  }
  return { ok: true, seconds: (performance.now() - started) / 1000, ...extra };
}

answerParentCommands(handle);
