import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_DEVICE_TOPICS, deviceTopicProblem, type DeviceTopics } from './domain/device-topics';

/**
 * The one configuration module. Every entry point (worker, webhook adapter, CLI, codec server,
 * dev stack) reads its settings here, from the environment merged over `.stack-state/env`.
 * Real environment variables take precedence over the file.
 */

const hostPort = z
  .string()
  .regex(/^[^\s:]+:\d{1,5}$/, 'must be host:port');
const port = z.coerce.number().int().min(0).max(65535);
const url = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' });
const nonEmpty = z.string().min(1, 'must not be empty');
/** Durations like `90s`, `2m`, `1h`, `1d`, or plain milliseconds. */
export const Duration = z
  .string()
  .regex(/^\d+(ms|s|m|h|d)?$/, 'must be a duration such as 30s, 2m, 1h')
  .transform(parseDurationMs);

export function parseDurationMs(text: string): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) throw new Error(`invalid duration "${text}"`);
  const value = Number(match[1]);
  const unit = match[2] ?? 'ms';
  const factor = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[unit] ?? 1;
  return value * factor;
}

/** Sizes like `1mb`, `256kb`, or plain bytes. */
const ByteSize = z
  .string()
  .regex(/^\d+(b|kb|mb)?$/i, 'must be a size such as 256kb or 1mb')
  .transform((text) => {
    const match = /^(\d+)(b|kb|mb)?$/i.exec(text) as RegExpExecArray;
    const factor = { b: 1, kb: 1_024, mb: 1_048_576 }[(match[2] ?? 'b').toLowerCase() as 'b'];
    return Number(match[1]) * factor;
  });

/** An optional variable where an empty value (compose's `${X:-}`) means unset. */
function optionalText<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (v === '' ? undefined : v), schema.optional());
}

function commaList(fallback: string) {
  return z
    .string()
    .default(fallback)
    .transform((text) => text.split(',').map((o) => o.trim()).filter(Boolean));
}

/** A device topic template (docs/jobs.md): placeholders fill whole levels. */
function deviceTopic(kind: keyof DeviceTopics) {
  return z
    .string()
    .default(DEFAULT_DEVICE_TOPICS[kind])
    .superRefine((v, ctx) => {
      const problem = deviceTopicProblem(kind, v);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    });
}

const sections = {
  temporal: z.object({
    TEMPORAL_ADDRESS: hostPort.default('127.0.0.1:7233'),
    TEMPORAL_NAMESPACE: nonEmpty.default('default'),
    TEMPORAL_TASK_QUEUE: nonEmpty.default('device-ops'),
    /** Device presence workflows, their activities and reconciliation (docs/task-queues.md). */
    TEMPORAL_PRESENCE_TASK_QUEUE: nonEmpty.default('device-ops-presence'),
    TEMPORAL_API_KEY: z.string().optional(),
    TEMPORAL_TLS: z.enum(['true', 'false']).default('false'),
  }),
  emqx: z.object({
    EMQX_API_URL: url.default('http://127.0.0.1:18083/api/v5'),
    EMQX_API_KEY: nonEmpty,
    EMQX_API_SECRET: nonEmpty,
    EMQX_REQUEST_TIMEOUT: Duration.default(10_000),
  }),
  mongo: z.object({
    MONGODB_URI: z.string().regex(/^mongodb(\+srv)?:\/\//, 'must be a mongodb:// URI').default('mongodb://127.0.0.1:27017'),
    MONGODB_DB: z.string().regex(/^[A-Za-z][A-Za-z0-9_]{0,62}$/, 'must be letters, digits and _').default('device_ops'),
  }),
  webhook: z.object({
    WEBHOOK_HOST: nonEmpty.default('127.0.0.1'),
    WEBHOOK_PORT: port.default(8080),
    WEBHOOK_TOKEN: z.string().min(16, 'must be at least 16 characters'),
    /** Largest request body the adapter reads; larger ones get 413. */
    WEBHOOK_BODY_LIMIT: ByteSize.default(1_048_576),
    /** Signal-with-start calls the adapter runs at once (one per device at a time). */
    WEBHOOK_SIGNAL_CONCURRENCY: z.coerce.number().int().min(1).max(1_000).default(32),
    /** Events accepted but not yet signalled above which the adapter answers 503, so EMQX holds them. */
    WEBHOOK_INBOX_LIMIT: z.coerce.number().int().min(1).default(100_000),
    /** Most events and bytes one signal to a device workflow carries (docs/webhook-adapter.md). */
    WEBHOOK_SIGNAL_MAX_EVENTS: z.coerce.number().int().min(1).max(5_000).default(500),
    WEBHOOK_SIGNAL_MAX_BYTES: ByteSize.pipe(z.number().min(1_024, 'must be at least 1kb').max(1_048_576, 'must be at most 1mb')).default(262_144),
    /** Lease on an inbox bucket: another adapter adopts a bucket not renewed for this long (docs/webhook-adapter.md). */
    WEBHOOK_INBOX_LEASE: Duration.pipe(z.number().min(1_000, 'must be at least 1s')).default(30_000),
    /** How long a device's disconnect waits for its reconnect, so a bounce is one signal (docs/presence.md); 0 sends at once. */
    WEBHOOK_DISCONNECT_HOLD: Duration.pipe(z.number().max(60_000, 'must be at most 1m')).default(3_000),
    /** A request whose events MongoDB has not stored within this is answered 503 (EMQX retries). */
    WEBHOOK_STORE_TIMEOUT: Duration.default(5_000),
    /** Batches of stored replies (up to 250 devices each) the adapter applies at once (docs/jobs.md). */
    WEBHOOK_REPLY_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(2),
    /** Connections and their timeouts (docs/webhook-adapter.md). */
    WEBHOOK_MAX_CONNECTIONS: z.coerce.number().int().min(1).max(100_000).default(512),
    WEBHOOK_IDLE_TIMEOUT: Duration.default(10_000),
    WEBHOOK_HEADERS_TIMEOUT: Duration.default(10_000),
    WEBHOOK_REQUEST_TIMEOUT: Duration.default(30_000),
    WEBHOOK_KEEPALIVE_TIMEOUT: Duration.default(75_000),
    /** The URL EMQX posts to (setup-webhook); default http://WEBHOOK_HOST:WEBHOOK_PORT/emqx/events. */
    WEBHOOK_PUBLIC_URL: url.optional(),
    /** Message topic filters whose publishes EMQX also sends (stored as device events), comma-separated. */
    WEBHOOK_MESSAGE_TOPICS: z
      .string()
      .default('')
      .transform((text) => text.split(',').map((t) => t.trim()).filter(Boolean)),
  }),
  codec: z.object({
    PAYLOAD_ENCRYPTION_KEYS: z.string().regex(
      /^[A-Za-z0-9_-]+:[A-Za-z0-9+/=]+(,[A-Za-z0-9_-]+:[A-Za-z0-9+/=]+)*$/,
      'must be id:base64key[,id:base64key...]',
    ),
  }),
  codecServer: z.object({
    CODEC_SERVER_HOST: nonEmpty.default('127.0.0.1'),
    CODEC_SERVER_PORT: port.default(8888),
    /** Static bearer token for programmatic callers; empty = unset. Required (or a JWKS) beyond loopback. */
    CODEC_SERVER_TOKEN: optionalText(z.string().min(16, 'must be at least 16 characters')),
    /** The identity provider whose access tokens (passed by the Temporal UI) are accepted; all three or none. */
    CODEC_JWKS_URL: optionalText(url),
    CODEC_JWT_ISSUER: optionalText(nonEmpty),
    CODEC_JWT_AUDIENCE: optionalText(nonEmpty),
    CODEC_CORS_ORIGINS: commaList('http://127.0.0.1:8233,http://localhost:8233'),
    /** Host names the server answers to (DNS-rebinding defence). */
    CODEC_ALLOWED_HOSTS: commaList('localhost,127.0.0.1,::1'),
    CODEC_SERVER_BODY_LIMIT: ByteSize.default(4 * 1_048_576),
    CODEC_SERVER_REQUEST_TIMEOUT: Duration.default(10_000),
  }).refine((c) => [c.CODEC_JWKS_URL, c.CODEC_JWT_ISSUER, c.CODEC_JWT_AUDIENCE].filter((v) => v === undefined).length % 3 === 0, {
    message: 'set CODEC_JWKS_URL, CODEC_JWT_ISSUER and CODEC_JWT_AUDIENCE together',
    path: ['CODEC_JWKS_URL'],
  }),
  worker: z.object({
    WORKER_SHUTDOWN_GRACE: Duration.default(30_000),
    WORKER_METRICS_ADDRESS: hostPort.optional(),
    WORKFLOW_BUNDLE_PATH: z.string().optional(),
    /** Workflows kept in memory (default: the SDK's, from the heap size); each device workflow is one. */
    WORKER_MAX_CACHED_WORKFLOWS: z.coerce.number().int().min(0).optional(),
    /** Which task queues this process polls (docs/task-queues.md): both by default, one to scale them apart. */
    WORKER_ROLES: z
      .string()
      .default('operations,presence')
      .transform((v) => v.split(',').map((r) => r.trim()).filter(Boolean))
      .pipe(z.array(z.enum(['operations', 'presence'])).min(1, 'name at least one of operations, presence')),
    WORKER_OPERATIONS_MAX_WORKFLOW_TASKS: z.coerce.number().int().min(2).default(40),
    WORKER_OPERATIONS_MAX_ACTIVITIES: z.coerce.number().int().min(1).default(100),
    WORKER_PRESENCE_MAX_WORKFLOW_TASKS: z.coerce.number().int().min(2).default(40),
    WORKER_PRESENCE_MAX_ACTIVITIES: z.coerce.number().int().min(1).default(100),
    LOG_LEVEL: z.enum(['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR']).default('INFO'),
  }),
  /** How long collections that grow with traffic are kept; 0 keeps them for good (docs/mongodb.md). */
  retention: z.object({
    RETENTION_EVENTS: Duration.default(30 * 86_400_000),
    RETENTION_STATS: Duration.default(90 * 86_400_000),
    RETENTION_DEAD_LETTERS: Duration.default(30 * 86_400_000),
    RETENTION_SWEEP_INTERVAL: Duration.pipe(z.number().min(1_000, 'must be at least 1s')).default(3_600_000),
  }),
  stats: z.object({
    STATS_SNAPSHOT_INTERVAL: Duration.default(60_000),
  }),
  alarm: z.object({
    ALARM_GRACE_PERIOD: Duration.default(120_000),
    ALARM_ESCALATION_STEPS: z
      .string()
      .default('15m,1h')
      .transform((text, ctx) => {
        try {
          return text.split(',').filter(Boolean).map((step) => parseDurationMs(step));
        } catch {
          ctx.addIssue({ code: 'custom', message: 'must be a comma-separated list of durations' });
          return z.NEVER;
        }
      }),
    ALARM_WEBHOOK_URL: url.optional(),
    /** This many disconnects inside ALARM_FLAP_WINDOW raise one flapping alarm. */
    ALARM_FLAP_THRESHOLD: z.coerce.number().int().min(2).max(1_000).default(5),
    ALARM_FLAP_WINDOW: Duration.default(600_000),
  }),
  presence: z.object({
    /** How often the reconciliation schedule compares EMQX's live clients with recorded presence. */
    PRESENCE_RECONCILE_INTERVAL: Duration.default(300_000),
    /** Device workflows continue as new after this many signals and updates. */
    PRESENCE_CONTINUE_AS_NEW_AFTER: z.coerce.number().int().min(10).max(5_000).default(1_000),
    /** Clients with no device record: `record` (history only) or `track` (device workflow and alarms). docs/presence.md */
    PRESENCE_UNKNOWN_CLIENTS: z.enum(['record', 'track'], { error: 'must be record or track' }).default('record'),
    /** Unknown clients whose whole id matches this regular expression are tracked anyway. */
    PRESENCE_TRACK_PATTERN: z
      .string()
      .optional()
      .transform((text, ctx) => {
        if (text === undefined || text === '') return undefined;
        try {
          return new RegExp(`^(?:${text})$`, 'u');
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: `must be a regular expression (${(err as Error).message})` });
          return z.NEVER;
        }
      }),
  }),
  campaign: z.object({
    /** The broker the worker publishes campaign messages to when a campaign's transport is `mqtt`; unset = REST only. */
    CAMPAIGN_MQTT_URL: z.string().regex(/^(mqtts?|wss?):\/\//, 'must be an mqtt://, mqtts://, ws:// or wss:// URL').optional(),
    CAMPAIGN_MQTT_USERNAME: z.string().optional(),
    CAMPAIGN_MQTT_PASSWORD: z.string().optional(),
    /** 5 lets EMQX report "no matching subscribers" per message; the dev broker speaks only 4 (3.1.1). */
    CAMPAIGN_MQTT_PROTOCOL_VERSION: z.enum(['4', '5']).default('4').transform(Number).pipe(z.union([z.literal(4), z.literal(5)])),
  }),
  /** Where devices take jobs and commands and answer them (docs/jobs.md). */
  jobs: z
    .object({
      JOB_TOPIC: deviceTopic('job'),
      JOB_STATUS_TOPIC: deviceTopic('jobStatus'),
      COMMAND_TOPIC: deviceTopic('command'),
      COMMAND_REPLY_TOPIC: deviceTopic('commandReply'),
    })
    .transform((v): DeviceTopics => ({ job: v.JOB_TOPIC, jobStatus: v.JOB_STATUS_TOPIC, command: v.COMMAND_TOPIC, commandReply: v.COMMAND_REPLY_TOPIC })),
} as const;

type Sections = typeof sections;
export type SectionName = keyof Sections;
export type Config<S extends SectionName> = { [K in S]: z.infer<Sections[K]> };

export class ConfigError extends Error {
  readonly type = 'ConfigError';
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Finds the repository root (the folder with our package.json), whether running from src or dist. */
export function projectRoot(): string {
  let dir = __dirname;
  for (;;) {
    const candidate = path.join(dir, 'package.json');
    if (existsSync(candidate)) {
      const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string };
      if (pkg.name === 'emqx-device-ops') return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
}

export function devstackEnvPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.DEVICE_OPS_ENV_FILE ?? path.join(projectRoot(), '.stack-state', 'env');
}

/** Parses `KEY=value` lines; `#` comments and blank lines are ignored. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return out;
}

/** The effective environment: `.stack-state/env` (when present) overlaid by the real environment. */
export function effectiveEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string | undefined> {
  const file = devstackEnvPath(env);
  const fromFile = existsSync(file) ? parseEnvFile(readFileSync(file, 'utf8')) : {};
  return { ...fromFile, ...env };
}

/**
 * Reads the named sections, failing with every missing or invalid variable listed at once.
 * Messages name the variable and the reason, never its value (values may be secrets).
 */
export function loadConfig<S extends SectionName>(
  names: readonly S[],
  env: Record<string, string | undefined> = effectiveEnv(),
): Config<S> {
  const problems: string[] = [];
  const result: Partial<Record<SectionName, unknown>> = {};
  for (const name of names) {
    const schema: z.ZodType = sections[name];
    const parsed = schema.safeParse(env);
    if (parsed.success) {
      result[name] = parsed.data;
      continue;
    }
    for (const issue of parsed.error.issues) {
      const variable = issue.path.join('.');
      const reason = issue.code === 'invalid_type' && env[variable] === undefined ? 'is required' : issue.message;
      problems.push(`${variable}: ${reason}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return result as Config<S>;
}

/** Temporal Cloud: an API key implies TLS; TEMPORAL_TLS=true for self-hosted TLS. */
export function temporalConnectionOptions(config: Config<'temporal'>['temporal']): { address: string; tls?: true; apiKey?: string } {
  const tls = config.TEMPORAL_TLS === 'true' || config.TEMPORAL_API_KEY !== undefined;
  return {
    address: config.TEMPORAL_ADDRESS,
    ...(tls ? { tls: true } : {}),
    ...(config.TEMPORAL_API_KEY ? { apiKey: config.TEMPORAL_API_KEY } : {}),
  };
}
