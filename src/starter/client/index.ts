import { randomBytes } from 'node:crypto';
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type WorkflowHandle,
  type WorkflowStartOptions,
} from '@temporalio/client';
import type { DataConverter, Workflow } from '@temporalio/common';
import { z } from 'zod';
import { createDataConverter } from '../../codec/data-converter';
import { loadConfig, temporalConnectionOptions } from '../../config';
import { AclRule, ClientId, ProvisionInput, Password, Subscription, TopicFilter, usernameOf, type DeviceRecord } from '../../domain/schemas/device';
import type { Alarm } from '../../domain/presence';
import { AlarmAction } from '../../domain/schemas/presence';
import { InputError, parseInput } from '../../domain/input-error';
import { deviceInputProblems } from '../../domain/acl-match';
import { DeviceIdKey, DeviceOperationKey } from '../../domain/search-attributes';
import { createEmqxClientFromConfig, DEFAULT_EVENT_TOPICS, type EmqxClient, type EventWebhookResult } from '../../emqx';
import { connectHistory, type ConnectionEvent, type History } from '../../store';
import { CampaignOps } from './campaigns';
import { CommandOps } from './commands';
import { DEFAULT_DEVICE_TOPICS, jobAclRules, replyTopicFilters, type DeviceTopics } from '../../domain/device-topics';
import { currentBrokerStats, trendOf, type BrokerStatsReport, type StatsTrend } from './stats';
import type {
  deprovisionDevice,
  kickDevice,
  provisionDevice,
  rotateCredentials,
  setDesiredSubscriptions,
  setDeviceAcl,
} from '../../workflows/device-admin';
import type { ProvisionRequest, ProvisionResult, RotateRequest } from '../../contracts/device-admin';
import { generatePassword, hashPassword } from './credentials';
import type { FleetFileDevice } from './fleet-file';
import { FLEET_CHUNK_SIZE, fleetChunkSignal, fleetProgressQuery, type FleetDevice, type FleetProgress } from '../../contracts/fleet';
import type { provisionFleet } from '../../workflows/fleet';
import {
  acknowledgeAlarmUpdate,
  clearAlarmUpdate,
  presenceQuery,
  presenceWorkflowId,
  recentEventsQuery,
  type AlarmView,
  type PresenceView,
  type RecentEvent,
} from '../../contracts/presence';
import type { devicePresence } from '../../workflows/presence';
import type { reconcilePresence } from '../../workflows/presence-reconcile';
import type { ReconcileReport } from '../../contracts/presence-reconcile';

/**
 * The client library a platform imports: typed, validated entry points that start and steer the
 * device workflows, and reads of the recorded and live state. Input is validated here, at the
 * boundary, before anything starts.
 */

export interface DeviceOpsDeps {
  temporal: Client;
  /** The operations queue: provisioning, campaigns, fleets (TEMPORAL_TASK_QUEUE). */
  taskQueue: string;
  /** The presence queue for reconciliation (TEMPORAL_PRESENCE_TASK_QUEUE); `taskQueue` when absent. */
  presenceTaskQueue?: string;
  emqx: EmqxClient;
  history: History;
  /** Job and command topics (JOB_TOPIC, JOB_STATUS_TOPIC, COMMAND_TOPIC, COMMAND_REPLY_TOPIC); default DEFAULT_DEVICE_TOPICS. */
  deviceTopics?: DeviceTopics;
}

export class WorkflowAlreadyRunningError extends Error {
  readonly type = 'WorkflowAlreadyRunningError';
  constructor(readonly workflowId: string) {
    super(`workflow ${workflowId} is already running; wait for it or cancel it in the Temporal UI`);
    this.name = 'WorkflowAlreadyRunningError';
  }
}

/** A started workflow, and the password the client generated for it (shown once by whoever called). */
export interface Started<W extends Workflow> {
  handle: WorkflowHandle<W>;
  generatedPassword?: string;
}

/** Provisioning input; `jobs` adds the ACL rules for the device's own job and command topics (docs/jobs.md). */
export type ProvisionOptions = z.input<typeof ProvisionInput> & { jobs?: boolean };

function withJobAcl(input: ProvisionOptions, topics: DeviceTopics): z.input<typeof ProvisionInput> {
  const { jobs, ...rest } = input;
  if (jobs !== true || typeof rest.clientId !== 'string') return rest;
  return { ...rest, acl: [...jobAclRules(rest.clientId, topics), ...(rest.acl ?? [])] };
}

function refuseProblems(problems: string[]): void {
  if (problems.length > 0) throw new InputError(problems);
}

const RotateInput = z
  .object({
    clientId: ClientId,
    password: Password.optional(),
    generatePassword: z.boolean().default(false),
    kick: z.boolean().default(false),
  })
  .refine((v) => (v.password !== undefined) !== v.generatePassword, {
    message: 'give exactly one of password or generatePassword',
    path: ['password'],
  });

export interface DeviceStatus {
  clientId: string;
  /** EMQX's live view. */
  online: boolean;
  /** What this project recorded from webhook events. */
  presence: 'online' | 'offline' | 'unknown';
  alarm: null | { level: number; state: 'active' | 'acknowledged' | 'cleared'; kind: Alarm['kind']; raisedAt: string };
  /** Where `presence` comes from: the device workflow, or (when it cannot answer) the last stored event. */
  presenceSource: 'workflow' | 'history';
  provisioned: boolean;
  username?: string;
  connectedAt?: string;
  disconnectedAt?: string;
  ipAddress?: string;
}

/** No device workflow exists for the client: EMQX never reported it and reconciliation has not seen it. */
export class NoPresenceWorkflowError extends Error {
  readonly type = 'NoPresenceWorkflowError';
  constructor(readonly clientId: string) {
    super(`no presence workflow for ${clientId}: no connect or disconnect has been recorded`);
    this.name = 'NoPresenceWorkflowError';
  }
}

/** A row of `alarms --json`. */
export interface AlarmSummary {
  clientId: string;
  level: number;
  state: Alarm['state'];
  raisedAt: string;
  kind: Alarm['kind'];
  alarmId: string;
  clearedBy?: Alarm['clearedBy'];
}

const WebhookSetup = z.strictObject({
  url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
  token: z.string().min(16, 'must be at least 16 characters'),
  messageTopics: z.array(TopicFilter).max(50).default([]),
});

/** How long a read waits for the device workflow before falling back to stored history. */
const QUERY_DEADLINE_MS = 5_000;

export class DeviceOps {
  /** Publish campaigns: start, progress, pause / resume / cancel, results (campaigns.ts). */
  readonly campaigns: CampaignOps;
  /** Commands a device answers: send, wait for the reply, status (commands.ts, docs/jobs.md). */
  readonly commands: CommandOps;

  constructor(private readonly deps: DeviceOpsDeps) {
    this.campaigns = new CampaignOps({ temporal: deps.temporal, taskQueue: deps.taskQueue, history: deps.history, topics: deps.deviceTopics ?? DEFAULT_DEVICE_TOPICS });
    this.commands = new CommandOps({ temporal: deps.temporal, taskQueue: deps.taskQueue, topics: deps.deviceTopics ?? DEFAULT_DEVICE_TOPICS });
  }

  /** Starts a workflow by its type name (clients never load workflow code). */
  private async start<W extends Workflow>(
    workflowType: string,
    operation: string,
    workflowId: string,
    clientId: string,
    args: Parameters<W>,
    memo: Record<string, unknown>,
  ): Promise<WorkflowHandle<W>> {
    try {
      // Temporal's `args` option is a conditional type over W, which TypeScript cannot resolve for a
      // generic W; the callers' explicit W keeps each call's arguments checked.
      return await this.deps.temporal.workflow.start<W>(workflowType, {
        workflowId,
        taskQueue: this.deps.taskQueue,
        args,
        workflowIdConflictPolicy: 'FAIL',
        typedSearchAttributes: [
          { key: DeviceIdKey, value: clientId },
          { key: DeviceOperationKey, value: operation },
        ],
        memo,
      } as unknown as WorkflowStartOptions<W>);
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) throw new WorkflowAlreadyRunningError(workflowId);
      throw err;
    }
  }

  /**
   * Starts provisioning. The password is hashed here (credentials.ts) and only the hash travels;
   * a generated password is returned once, here, and nowhere else.
   */
  async startProvisioning(input: ProvisionOptions): Promise<Started<typeof provisionDevice>> {
    const parsed = parseInput(ProvisionInput, withJobAcl(input, this.deps.deviceTopics ?? DEFAULT_DEVICE_TOPICS));
    refuseProblems(deviceInputProblems(parsed));
    const { password, generatePassword: generate, ...device } = parsed;
    const secret = password ?? generatePassword();
    const request: ProvisionRequest = { ...device, credentials: hashPassword(secret), passwordGenerated: generate };
    const handle = await this.start<typeof provisionDevice>('provisionDevice', 'provision', `provision/${parsed.clientId}`, parsed.clientId, [request], {
      clientId: parsed.clientId,
      username: usernameOf(parsed),
    });
    return { handle, ...(generate ? { generatedPassword: secret } : {}) };
  }

  async provision(input: ProvisionOptions): Promise<ProvisionResult & { generatedPassword?: string }> {
    const { handle, generatedPassword } = await this.startProvisioning(input);
    return { ...(await handle.result()), ...(generatedPassword ? { generatedPassword } : {}) };
  }

  async startDeprovisioning(clientId: string): Promise<WorkflowHandle<typeof deprovisionDevice>> {
    const id = parseInput(ClientId, clientId, 'clientId');
    return this.start<typeof deprovisionDevice>('deprovisionDevice', 'deprovision', `deprovision/${id}`, id, [{ clientId: id }], { clientId: id });
  }

  /** Starts a credential rotation; as with provisioning, only the hash travels and a generated password is returned here once. */
  async startRotation(input: z.input<typeof RotateInput>): Promise<Started<typeof rotateCredentials>> {
    const parsed = parseInput(RotateInput, input);
    const secret = parsed.password ?? generatePassword();
    const request: RotateRequest = { clientId: parsed.clientId, credentials: hashPassword(secret), passwordGenerated: parsed.generatePassword, kick: parsed.kick };
    const handle = await this.start<typeof rotateCredentials>('rotateCredentials', 'rotate-credentials', `rotate/${parsed.clientId}`, parsed.clientId, [request], {
      clientId: parsed.clientId,
      kick: parsed.kick,
    });
    return { handle, ...(parsed.generatePassword ? { generatedPassword: secret } : {}) };
  }

  async kick(clientId: string) {
    const id = parseInput(ClientId, clientId, 'clientId');
    return (await this.start<typeof kickDevice>('kickDevice', 'kick', `kick/${id}`, id, [{ clientId: id }], { clientId: id })).result();
  }

  /** Refused when the device's desired subscriptions would no longer be allowed by the new rules. */
  async setAcl(clientId: string, rules: unknown[]) {
    const id = parseInput(ClientId, clientId, 'clientId');
    const parsed = parseInput(z.array(AclRule).max(99), rules, 'acl');
    const record = await this.deps.history.getDevice(id);
    if (record?.status === 'active') refuseProblems(deviceInputProblems({ ...record, acl: parsed }));
    return (await this.start<typeof setDeviceAcl>('setDeviceAcl', 'set-acl', `acl/${id}`, id, [{ clientId: id, rules: parsed }], { clientId: id })).result();
  }

  /** Refused when the device's ACL does not allow a subscription (EMQX does not check proxy subscriptions). */
  async setSubscriptions(clientId: string, subscriptions: unknown[]) {
    const id = parseInput(ClientId, clientId, 'clientId');
    const parsed = parseInput(z.array(Subscription).max(100), subscriptions, 'subscriptions');
    const record = await this.deps.history.getDevice(id);
    if (record?.status === 'active') refuseProblems(deviceInputProblems({ ...record, subscriptions: parsed }));
    return (
      await this.start<typeof setDesiredSubscriptions>('setDesiredSubscriptions', 'set-subscriptions', `subscriptions/${id}`, id, [{ clientId: id, subscriptions: parsed }], {
        clientId: id,
      })
    ).result();
  }

  /**
   * Starts fleet provisioning and hands the devices over in chunks. Devices must already be
   * validated (see fleet-file.ts); the returned handle's result lists per-device failures.
   */
  async startFleetProvisioning(
    fileDevices: FleetFileDevice[],
    onProgress?: (sentChunks: number, totalChunks: number) => void,
  ): Promise<{ fleetId: string; handle: WorkflowHandle<typeof provisionFleet> }> {
    if (fileDevices.length === 0) throw new InputError(['devices: the fleet file has no devices']);
    const devices: FleetDevice[] = fileDevices.map(({ password, ...device }) => ({ ...device, credentials: hashPassword(password) }));
    const fleetId = `fleet-${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}-${randomBytes(3).toString('hex')}`;
    const chunkCount = Math.ceil(devices.length / FLEET_CHUNK_SIZE);
    const handle = await this.deps.temporal.workflow.start<typeof provisionFleet>('provisionFleet', {
      workflowId: `provision-fleet/${fleetId}`,
      taskQueue: this.deps.taskQueue,
      args: [{ fleetId, total: devices.length, chunkCount }],
      typedSearchAttributes: [{ key: DeviceOperationKey, value: 'provision-fleet' }],
      memo: { fleetId, devices: devices.length },
    });
    for (let index = 0; index < chunkCount; index++) {
      await handle.signal(fleetChunkSignal, { index, devices: devices.slice(index * FLEET_CHUNK_SIZE, (index + 1) * FLEET_CHUNK_SIZE) });
      onProgress?.(index + 1, chunkCount);
    }
    return { fleetId, handle };
  }

  async fleetProgress(handle: WorkflowHandle<typeof provisionFleet>): Promise<FleetProgress> {
    return handle.query(fleetProgressQuery);
  }

  async device(clientId: string): Promise<DeviceRecord | null> {
    return this.deps.history.getDevice(parseInput(ClientId, clientId, 'clientId'));
  }

  /** Recorded rules and the rules EMQX holds now (with the final deny this project adds). */
  async acl(clientId: string): Promise<{ clientId: string; recorded: AclRule[] | null; emqx: AclRule[] | null }> {
    const id = parseInput(ClientId, clientId, 'clientId');
    const [record, live] = await Promise.all([this.deps.history.getDevice(id), this.deps.emqx.getAclRules({ clientid: id })]);
    return {
      clientId: id,
      recorded: record?.acl ?? null,
      emqx: live?.map((r) => ({ permission: r.permission, action: r.action, topic: r.topic })) ?? null,
    };
  }

  async subscriptions(clientId: string): Promise<{ clientId: string; desired: Subscription[]; live: Subscription[] | null }> {
    const id = parseInput(ClientId, clientId, 'clientId');
    const [record, live] = await Promise.all([this.deps.history.getDevice(id), this.deps.emqx.getClientSubscriptions(id)]);
    return { clientId: id, desired: record?.subscriptions ?? [], live: live?.map((s) => ({ topic: s.topic, qos: s.qos as Subscription['qos'] })) ?? null };
  }

  async status(clientId: string): Promise<DeviceStatus> {
    const id = parseInput(ClientId, clientId, 'clientId');
    const [record, live, last, view, alarms] = await Promise.all([
      this.deps.history.getDevice(id),
      this.deps.emqx.getClient(id),
      this.deps.history.connectionHistory(id, 1),
      this.presenceOf(id).catch(() => undefined),
      this.deps.history.alarms.ofDevice(id, 1),
    ]);
    const latest = last[0];
    const stored = alarms[0];
    const alarm = view?.alarm ?? (stored ? { level: stored.level, state: stored.state, kind: stored.kind, raisedAt: stored.raisedAt } : null);
    return {
      clientId: id,
      online: live?.connected === true,
      presence: view ? view.presence : latest ? (latest.event === 'connected' ? 'online' : 'offline') : 'unknown',
      alarm: alarm ? { level: alarm.level, state: alarm.state, kind: alarm.kind, raisedAt: alarm.raisedAt } : null,
      presenceSource: view ? 'workflow' : 'history',
      provisioned: record?.status === 'active',
      ...(record ? { username: record.username } : {}),
      ...(live?.connected_at ? { connectedAt: live.connected_at } : {}),
      ...(live?.disconnected_at ? { disconnectedAt: live.disconnected_at } : {}),
      ...(live?.ip_address ? { ipAddress: live.ip_address } : {}),
    };
  }

  /** EMQX's live figures and message rates (`/stats`, `/metrics`, `/monitor_current`). */
  async brokerStats(): Promise<BrokerStatsReport> {
    return currentBrokerStats(this.deps);
  }

  /** Trends from the stored snapshots since `sinceMs` ago. */
  async statsTrend(sinceMs: number): Promise<StatsTrend> {
    const since = new Date(Date.now() - sinceMs);
    return trendOf(await this.deps.history.stats.since(since), since);
  }

  /**
   * The device workflow's view (presence, alarm, counters); null when there is no workflow.
   * Rejects when the workflow cannot answer within a few seconds (no worker running).
   */
  async presenceOf(clientId: string): Promise<PresenceView | null> {
    const id = parseInput(ClientId, clientId, 'clientId');
    const handle = this.deps.temporal.workflow.getHandle<typeof devicePresence>(presenceWorkflowId(id));
    try {
      return await this.deps.temporal.withDeadline(Date.now() + QUERY_DEADLINE_MS, () => handle.query(presenceQuery));
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return null;
      throw err;
    }
  }

  /** The last presence events the device workflow received, newest first, with what it made of each. */
  async recentPresenceEvents(clientId: string): Promise<RecentEvent[]> {
    const id = parseInput(ClientId, clientId, 'clientId');
    return this.deps.temporal.workflow.getHandle<typeof devicePresence>(presenceWorkflowId(id)).query(recentEventsQuery);
  }

  /** Recorded alarms, newest first; `open` keeps those not cleared (active or acknowledged). */
  async alarms(options: { open?: boolean; limit?: number } = {}): Promise<AlarmSummary[]> {
    const limit = parseInput(z.int().min(1).max(10_000), options.limit ?? 100, 'limit');
    const alarms = await this.deps.history.alarms.list({ open: options.open === true, limit });
    return alarms.map((a) => ({
      clientId: a.clientId,
      level: a.level,
      state: a.state,
      raisedAt: a.raisedAt,
      kind: a.kind,
      alarmId: a.alarmId,
      ...(a.clearedBy ? { clearedBy: a.clearedBy } : {}),
    }));
  }

  /** Acknowledges the device's active alarm: escalation stops; reconnect or clear ends it. */
  async acknowledgeAlarm(clientId: string, action: { note?: string } = {}): Promise<AlarmView> {
    return this.alarmUpdate('acknowledge', clientId, action);
  }

  /** Clears the device's open alarm by hand. */
  async clearAlarm(clientId: string, action: { note?: string } = {}): Promise<AlarmView> {
    return this.alarmUpdate('clear', clientId, action);
  }

  private async alarmUpdate(kind: 'acknowledge' | 'clear', clientId: string, action: { note?: string }): Promise<AlarmView> {
    const id = parseInput(ClientId, clientId, 'clientId');
    const parsed = parseInput(AlarmAction, action);
    const handle = this.deps.temporal.workflow.getHandle(presenceWorkflowId(id));
    try {
      return await handle.executeUpdate(kind === 'acknowledge' ? acknowledgeAlarmUpdate : clearAlarmUpdate, { args: [parsed] });
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new NoPresenceWorkflowError(id);
      throw err;
    }
  }

  /** One reconciliation of EMQX's live clients with recorded presence, now (the schedule runs the same). */
  async reconcilePresence(): Promise<ReconcileReport> {
    return this.deps.temporal.workflow.execute<typeof reconcilePresence>('reconcilePresence', {
      workflowId: `presence-reconcile/manual-${Date.now()}`,
      taskQueue: this.deps.presenceTaskQueue ?? this.deps.taskQueue,
      args: [],
      typedSearchAttributes: [{ key: DeviceOperationKey, value: 'presence-reconcile' }],
    });
  }

  /**
   * Creates (or updates) EMQX's connector, HTTP action and rule that POST device events to the
   * webhook adapter with the shared token (docs/emqx-setup.md). Idempotent.
   */
  async setupEventWebhook(input: { url: string; token: string; messageTopics?: string[] }): Promise<EventWebhookResult & { url: string; topics: string[] }> {
    const parsed = parseInput(WebhookSetup, input);
    const topics = [...DEFAULT_EVENT_TOPICS, ...parsed.messageTopics];
    // The adapter's address alone (`http://webhook:8080`) means its events endpoint.
    const target = new URL(parsed.url);
    if (target.pathname === '/') target.pathname = '/emqx/events';
    const url = target.toString();
    const replyTopics = replyTopicFilters(this.deps.deviceTopics ?? DEFAULT_DEVICE_TOPICS);
    const result = await this.deps.emqx.ensureEventWebhook({ url, token: parsed.token, topics, replyTopics });
    return { ...result, url, topics };
  }

  async history(clientId: string, limit = 50): Promise<ConnectionEvent[]> {
    const id = parseInput(ClientId, clientId, 'clientId');
    const n = parseInput(z.number().int().min(1).max(10_000), limit, 'limit');
    return this.deps.history.connectionHistory(id, n);
  }
}

/** Connects to Temporal (with the payload codec), EMQX and MongoDB from the configuration. */
export async function connectDeviceOps(
  env?: Record<string, string | undefined>,
): Promise<{ ops: DeviceOps; close(): Promise<void> }> {
  const config = loadConfig(['temporal', 'emqx', 'mongo', 'codec', 'jobs'], env);
  const dataConverter: DataConverter = createDataConverter(config.codec.PAYLOAD_ENCRYPTION_KEYS);
  const connection = await Connection.connect(temporalConnectionOptions(config.temporal));
  const temporal = new Client({ connection, namespace: config.temporal.TEMPORAL_NAMESPACE, dataConverter });
  const emqx = createEmqxClientFromConfig(config.emqx);
  const mongo = await connectHistory(config.mongo.MONGODB_URI, config.mongo.MONGODB_DB);
  const ops = new DeviceOps({
    temporal,
    taskQueue: config.temporal.TEMPORAL_TASK_QUEUE,
    presenceTaskQueue: config.temporal.TEMPORAL_PRESENCE_TASK_QUEUE,
    emqx,
    history: mongo.history,
    deviceTopics: config.jobs,
  });
  return {
    ops,
    async close() {
      await Promise.allSettled([mongo.close(), emqx.close(), connection.close()]);
    },
  };
}
