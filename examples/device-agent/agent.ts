/**
 * An example device (docs/jobs.md): connects with its credentials, takes jobs and commands on its
 * own topics, reports a job IN_PROGRESS (with progress) and then SUCCEEDED or FAILED, and answers
 * commands. What it does is configurable, so tests can make devices that succeed, fail, reject,
 * never answer or answer late. Speaks MQTT 3.1.1 (`protocolVersion: 4`) and MQTT 5: an MQTT 5
 * command carrying a response topic is answered there, with its correlation data.
 *
 * Run it: `npx tsx examples/device-agent/agent.ts --client-id dev-1 --url mqtt://127.0.0.1:1883`
 * with the password in DEVICE_PASSWORD.
 */
import { parseArgs } from 'node:util';
import mqtt, { type IClientPublishOptions, type MqttClient } from 'mqtt';
import { DEFAULT_DEVICE_TOPICS, deviceTopicFilter, matchDeviceTopic, renderDeviceTopic, type DeviceTopics } from '../../src/domain/device-topics';

/** What the device does with a job or a command. `ignore`: never answers. */
export type Behaviour = 'succeed' | 'fail' | 'reject' | 'ignore';

export interface DeviceAgentOptions {
  url: string;
  clientId: string;
  username?: string;
  password: string;
  /** 4 = MQTT 3.1.1 (default), 5 = MQTT 5. */
  protocolVersion?: 4 | 5;
  /** false keeps the session (and its subscriptions and queued QoS 1 messages) while offline. */
  clean?: boolean;
  topics?: DeviceTopics;
  /**
   * `behaviour` for every delivery of a job (or a function of the job id, to answer some jobs and
   * not others), or `attempts[n]` for its (n+1)-th delivery (a retried job comes again with the
   * same id), `behaviour` once the list is used up.
   */
  jobs?: { behaviour?: Behaviour | ((jobId: string) => Behaviour); attempts?: Behaviour[]; progress?: number[]; delayMs?: number };
  commands?: { behaviour?: Behaviour; delayMs?: number };
  /** Called for each message received (for logs and tests). */
  onMessage?: (topic: string, payload: string) => void;
}

export interface DeviceAgent {
  client: MqttClient;
  /** Job ids and command ids received, in order. */
  jobs: string[];
  commands: string[];
  /** Replies published so far, in order. */
  published: { topic: string; payload: string }[];
  stop(): Promise<void>;
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function startDeviceAgent(options: DeviceAgentOptions): Promise<DeviceAgent> {
  const topics = options.topics ?? DEFAULT_DEVICE_TOPICS;
  const own = { clientid: options.clientId };
  const client = await mqtt.connectAsync(options.url, {
    clientId: options.clientId,
    username: options.username ?? options.clientId,
    password: options.password,
    protocolVersion: options.protocolVersion ?? 4,
    clean: options.clean ?? true,
    ...(options.protocolVersion === 5 && options.clean === false ? { properties: { sessionExpiryInterval: 3_600 } } : {}),
    reconnectPeriod: 0,
    connectTimeout: 10_000,
  });
  const agent: DeviceAgent = {
    client,
    jobs: [],
    commands: [],
    published: [],
    stop: () => client.endAsync(),
  };
  const publish = async (topic: string, body: unknown, extra: IClientPublishOptions = {}): Promise<void> => {
    const payload = JSON.stringify(body);
    await client.publishAsync(topic, payload, { qos: 1, ...extra });
    agent.published.push({ topic, payload });
  };

  /** An MQTT 5 message's response topic and correlation data: where to answer, and what to give back. */
  function answerTo(packet: mqtt.IPublishPacket, fallbackTopic: string): { topic: string; extra: IClientPublishOptions } {
    const correlationData = packet.properties?.correlationData;
    return { topic: packet.properties?.responseTopic ?? fallbackTopic, extra: correlationData ? { properties: { correlationData } } : {} };
  }

  async function runJob(jobId: string, packet: mqtt.IPublishPacket): Promise<void> {
    const { behaviour: given = 'succeed', progress = [50], delayMs = 0, attempts = [] } = options.jobs ?? {};
    const delivery = agent.jobs.filter((id) => id === jobId).length;
    const behaviour = attempts[delivery - 1] ?? (typeof given === 'function' ? given(jobId) : given);
    if (behaviour === 'ignore') return;
    const { topic, extra } = answerTo(packet, renderDeviceTopic(topics.jobStatus, { ...own, jobid: jobId }));
    if (behaviour === 'reject') return publish(topic, { status: 'REJECTED', details: { reason: 'not accepted by this device' } }, extra);
    for (const step of progress) await publish(topic, { status: 'IN_PROGRESS', progress: step }, extra);
    await pause(delayMs);
    await publish(topic, behaviour === 'succeed' ? { status: 'SUCCEEDED', details: { finishedBy: options.clientId } } : { status: 'FAILED', details: { reason: 'the job failed on the device' } }, extra);
  }

  async function answerCommand(commandId: string, payload: string, packet: mqtt.IPublishPacket): Promise<void> {
    const { behaviour = 'succeed', delayMs = 0 } = options.commands ?? {};
    if (behaviour === 'ignore') return;
    await pause(delayMs);
    const { topic: replyTopic, extra } = answerTo(packet, renderDeviceTopic(topics.commandReply, { ...own, commandid: commandId }));
    const status = behaviour === 'succeed' ? 'SUCCEEDED' : behaviour === 'fail' ? 'FAILED' : 'REJECTED';
    await publish(replyTopic, { status, result: { command: payload, by: options.clientId } }, extra);
  }

  client.on('message', (topic, buffer, packet) => {
    const payload = buffer.toString('utf8');
    options.onMessage?.(topic, payload);
    const job = matchDeviceTopic(topics.job, topic);
    const command = job ? null : matchDeviceTopic(topics.command, topic);
    const work = job?.jobid
      ? (agent.jobs.push(job.jobid), runJob(job.jobid, packet))
      : command?.commandid
        ? (agent.commands.push(command.commandid), answerCommand(command.commandid, payload, packet))
        : Promise.resolve();
    // The connection closing mid-answer (a test stopping the device) is not an error of the device.
    work.catch((err: unknown) => {
      if (!client.disconnecting && client.connected) console.error(`device ${options.clientId}: ${(err as Error).message}`);
    });
  });
  const wanted = [deviceTopicFilter(topics.job, own), deviceTopicFilter(topics.command, own)];
  // 128 (MQTT 3.1.1) or a reason code >= 0x80 (MQTT 5): the broker's ACL refused the topic.
  // mqtt.js rejects the whole SUBSCRIBE then, with the granted list on the error's packet.
  const granted = await client.subscribeAsync(wanted, { qos: 1 }).then(
    (grants) => grants.map((g) => g.qos),
    (err: { packet?: { granted?: (number | { qos: number })[] } }) => {
      const grants = err.packet?.granted;
      if (!grants) throw err;
      return grants.map((g) => (typeof g === 'number' ? g : g.qos));
    },
  );
  const refused = wanted.filter((_, i) => (granted[i] ?? 128) >= 128);
  if (refused.length > 0) {
    await client.endAsync();
    throw new Error(`device ${options.clientId}: subscription refused for ${refused.join(', ')}; provision the device with --jobs`);
  }
  return agent;
}

function behaviourFlag(value: string | undefined, flag: string): Behaviour | undefined {
  if (value === undefined) return undefined;
  if (!['succeed', 'fail', 'reject', 'ignore'].includes(value)) throw new Error(`${flag}: "${value}" must be succeed, fail, reject or ignore`);
  return value as Behaviour;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string', default: 'mqtt://127.0.0.1:1883' },
      'client-id': { type: 'string' },
      username: { type: 'string' },
      mqtt5: { type: 'boolean', default: false },
      persistent: { type: 'boolean', default: false },
      jobs: { type: 'string' },
      commands: { type: 'string' },
      delay: { type: 'string', default: '0' },
    },
  });
  const clientId = values['client-id'];
  const password = process.env.DEVICE_PASSWORD;
  if (!clientId) throw new Error('--client-id: is required');
  if (!password) throw new Error('DEVICE_PASSWORD: is required (the device password; not a flag, so it does not show in ps)');
  const delayMs = Number(values.delay);
  if (!Number.isInteger(delayMs) || delayMs < 0) throw new Error(`--delay: "${values.delay}" must be milliseconds`);
  const jobs = behaviourFlag(values.jobs, '--jobs');
  const commands = behaviourFlag(values.commands, '--commands');
  const agent = await startDeviceAgent({
    url: values.url,
    clientId,
    password,
    ...(values.username ? { username: values.username } : {}),
    protocolVersion: values.mqtt5 ? 5 : 4,
    clean: !values.persistent,
    jobs: { ...(jobs ? { behaviour: jobs } : {}), delayMs },
    commands: { ...(commands ? { behaviour: commands } : {}), delayMs },
    onMessage: (topic, payload) => console.log(`<- ${topic} ${payload}`),
  });
  console.log(`device ${clientId} connected to ${values.url}; Ctrl-C to stop`);
  process.once('SIGINT', () => void agent.stop().then(() => process.exit(0)));
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
