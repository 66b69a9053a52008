import { afterAll, beforeAll } from 'vitest';
import { startDeviceAgent, type DeviceAgent, type DeviceAgentOptions } from '../../examples/device-agent/agent';
import { startPresenceEnv, type PresenceTestEnv } from './presence-env';

/** The password job tests provision a device with. */
export const passwordOf = (clientId: string): string => `${clientId}-password`;

/** An alarm policy that stays quiet for the length of a test. */
export const QUIET_ALARMS = { graceMs: 600_000, escalationMs: [] as number[] };

export interface JobTestEnv {
  /** Set once the file's beforeAll has run. */
  readonly env: PresenceTestEnv;
  /** Starts an example device agent (MQTT 3.1.1 and the password of `passwordOf` unless given); it is stopped after the file. */
  startAgent(options: Omit<DeviceAgentOptions, 'url' | 'password'> & { password?: string }): Promise<DeviceAgent>;
}

/**
 * The stack of a test file about jobs (docs/jobs.md): the presence env (dev broker with its rule
 * engine, webhook adapter, worker, FerretDB) started before the file's tests, and every device agent
 * they start stopped after them.
 */
export function useJobTestEnv(): JobTestEnv {
  let env: PresenceTestEnv | undefined;
  const agents: DeviceAgent[] = [];
  beforeAll(async () => {
    env = await startPresenceEnv();
  });
  afterAll(async () => {
    await Promise.allSettled(agents.map((a) => a.stop()));
    await env?.close();
  });
  return {
    get env(): PresenceTestEnv {
      if (!env) throw new Error('the job test env is used before its beforeAll ran');
      return env;
    },
    async startAgent(options) {
      const agent = await startDeviceAgent({ protocolVersion: 4, ...options, url: this.env.broker.mqttUrl, password: options.password ?? passwordOf(options.clientId) });
      agents.push(agent);
      return agent;
    },
  };
}
