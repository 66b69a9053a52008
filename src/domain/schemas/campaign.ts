import { z } from 'zod';
import { ClientId, Qos } from './device';
import { TEMPLATE_VARIABLE, TopicTemplate } from './campaign-template';
import { CAMPAIGN_CHUNK_SIZE, MAX_BATCH_SIZE } from '../campaign';
import type { JobRetrySettings } from '../job-status';
import { ROLLBACK_SUFFIX } from '../campaign-rollback';
import { MaintenanceWindowError, parseMaintenanceWindow, windowStateAt } from '../maintenance-window';

export * from '../campaign';

/**
 * Campaign shapes: what a caller asks for (validated once at the boundary, in the starter) and the
 * settings the workflow and activities trust afterwards (workflow code imports ../campaign.ts and
 * types only). Vocabulary follows AWS IoT Jobs
 * (https://docs.aws.amazon.com/iot/latest/apireference/API_CreateJob.html): rollout (maximumPerMinute,
 * exponentialRate), abort criteria, retry criteria, in-progress timeout.
 */

/** A campaign id is also a workflow id part and a MongoDB key: letters, digits, `_` and `-`. */
export const CampaignId = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'must be 1-64 letters, digits, "_" or "-", starting with a letter or digit');

/**
 * The largest publishable message (EMQX `mqtt.max_packet_size` default,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_schema.erl).
 */
export const MAX_MESSAGE_BYTES = 1024 * 1024;
export const MAX_CAMPAIGN_TARGETS = 1_000_000;

const base64 = /^[A-Za-z0-9+/]*={0,2}$/;

export const PayloadTemplate = z.discriminatedUnion('format', [
  /** Text; `${clientid}` and per-target values are substituted. */
  z.object({ format: z.literal('text'), text: z.string().max(MAX_MESSAGE_BYTES) }),
  /** JSON; placeholders may appear inside strings, values are JSON-escaped; each rendering must parse. */
  z.object({ format: z.literal('json'), text: z.string().max(MAX_MESSAGE_BYTES) }),
  /** Binary, base64-encoded; sent as is (no placeholders). */
  z.object({
    format: z.literal('base64'),
    data: z
      .string()
      .max(Math.ceil(MAX_MESSAGE_BYTES / 3) * 4)
      .refine((v) => v.length % 4 === 0 && base64.test(v), 'must be base64'),
  }),
]);
export type PayloadTemplate = z.infer<typeof PayloadTemplate>;

export const MessageTemplate = z.object({
  topic: TopicTemplate,
  payload: PayloadTemplate,
  qos: Qos.default(1),
  retain: z.boolean().default(false),
  /** MQTT 5 properties (EMQX delivers them to MQTT 5 subscribers only). */
  properties: z
    .object({
      messageExpiryInterval: z.number().int().min(0).max(4_294_967_295).optional(),
      userProperties: z.record(z.string().min(1).max(256), z.string().max(1024)).optional(),
      /** Where an MQTT 5 device answers (a topic template: `${clientid}` and per-target values); a job's is its status topic. */
      responseTopic: TopicTemplate.optional(),
      /** Given back by the device with its answer; a job's is the job id. */
      correlationData: z.string().min(1).max(1024).optional(),
    })
    .optional(),
});
export type MessageTemplate = z.infer<typeof MessageTemplate>;

export const TargetValues = z.record(
  z.string().regex(TEMPLATE_VARIABLE, 'template variable names are letters, digits and "_"'),
  z.string().max(4096),
);
export type TargetValues = z.infer<typeof TargetValues>;

export const CampaignTarget = z.object({ clientId: ClientId, values: TargetValues.optional() });
export type CampaignTarget = z.infer<typeof CampaignTarget>;

/** Device records to target (active devices only); every given condition must hold. */
export const TargetSelector = z
  .object({ prefix: z.string().min(1).max(128).optional(), tag: z.string().min(1).max(64).optional() })
  .refine((s) => s.prefix !== undefined || s.tag !== undefined, 'give a prefix, a tag or both');
export type TargetSelector = z.infer<typeof TargetSelector>;

export const ExponentialRate = z
  .object({
    baseRatePerMinute: z.number().int().min(1).max(1_000_000),
    /** AWS allows 1.1-5 with one decimal place. */
    incrementFactor: z.number().min(1.1).max(5),
    /** Raise the rate after this many more targets were delivered... */
    numberOfSucceededTargets: z.number().int().min(1).optional(),
    /** ...or after this many more were published to. */
    numberOfNotifiedTargets: z.number().int().min(1).optional(),
  })
  .refine((r) => (r.numberOfSucceededTargets === undefined) !== (r.numberOfNotifiedTargets === undefined), {
    message: 'give exactly one of numberOfSucceededTargets and numberOfNotifiedTargets',
  });
export type ExponentialRate = z.infer<typeof ExponentialRate>;

export const Rollout = z.object({
  /** Hard cap on targets published to per minute; unset = as fast as the stack goes. */
  maximumPerMinute: z.number().int().min(1).max(10_000_000).optional(),
  exponentialRate: ExponentialRate.optional(),
  /** Targets per /publish/bulk request; with no rate limit one activity sends up to 5 in a row. */
  batchSize: z.number().int().min(1).max(MAX_BATCH_SIZE).default(500),
  /** Batches in flight at once (on different chunks). */
  concurrency: z.number().int().min(1).max(16).default(4),
});
export type Rollout = z.infer<typeof Rollout>;

export const RetryRule = z.object({
  retries: z.number().int().min(0).max(100),
  backoffMs: z.number().int().min(0).max(86_400_000),
  backoffCoefficient: z.number().min(1).max(10).default(2),
  maximumBackoffMs: z.number().int().min(0).max(86_400_000).default(300_000),
});
export type RetryRule = z.infer<typeof RetryRule>;

export const RetryPolicy = z.object({
  /** 503, timeouts, connection errors, per-message dispatch failures. */
  transient: RetryRule.default({ retries: 3, backoffMs: 2_000, backoffCoefficient: 2, maximumBackoffMs: 300_000 }),
  /** 202 no_matching_subscribers: the device is offline or not subscribed. */
  noSubscriber: RetryRule.default({ retries: 0, backoffMs: 5_000, backoffCoefficient: 2, maximumBackoffMs: 300_000 }),
  /**
   * A bulk request whose answer was lost after it was sent (timeout, connection reset): EMQX may
   * have published its messages. `give-up` ends those targets failed without sending again (no
   * device gets the message twice); `retry` sends again as a transient failure (at-least-once: a
   * device may get it twice). docs/campaign-delivery.md.
   */
  unknownOutcome: z.enum(['give-up', 'retry']).default('give-up'),
});
export type RetryPolicy = z.infer<typeof RetryPolicy>;

export const OfflinePolicy = z.object({
  /** Keep targets without a subscriber pending until they reconnect or the deadline passes. */
  wait: z.boolean().default(false),
  /** How often a waiting target is tried again without a reconnect signal. */
  recheckIntervalMs: z.number().int().min(100).max(86_400_000).default(60_000),
  /** After a reconnect signal: tries at 0, 1x, 2x, 4x... this backoff (the device may not have subscribed yet). */
  wakeRetries: z.number().int().min(0).max(10).default(3),
  wakeBackoffMs: z.number().int().min(0).max(600_000).default(1_000),
  /**
   * Count a target delivered only when the device itself had a session at the publish (EMQX
   * answers 200 when any subscriber matches, a `#` monitor included: docs/campaign-delivery.md).
   * `false` trusts EMQX's answer and saves two session reads per request.
   */
  confirmAtDevice: z.boolean().default(true),
});
export type OfflinePolicy = z.infer<typeof OfflinePolicy>;

/** `rejected` counts only in campaigns with `expectReply` (a device-reported REJECTED). */
export const FailureType = z.enum(['failed', 'offline', 'timed_out', 'rejected', 'all']);
export type FailureType = z.infer<typeof FailureType>;

export const AbortCriterion = z.object({
  failureType: FailureType,
  /** Finished targets needed before the criterion may fire. */
  minExecuted: z.number().int().min(1),
  thresholdPercent: z.number().gt(0).max(100),
});
export type AbortCriterion = z.infer<typeof AbortCriterion>;

export const Transport = z.enum(['rest', 'mqtt']);
export type Transport = z.infer<typeof Transport>;

const durationMs = z.number().int().min(1_000).max(365 * 86_400_000);

export const MAX_MAINTENANCE_WINDOWS = 10;

/**
 * When the rollout may publish (docs/campaigns.md, "Scheduling"): not before `startAt`, and, with
 * `windows`, only while one of them is open ("<cron> <duration>", src/domain/maintenance-window.ts).
 */
export const CampaignSchedule = z
  .object({
    startAt: z.iso.datetime({ offset: true, error: 'must be an ISO 8601 time with a time zone, e.g. 2026-12-08T01:00:00Z' }).optional(),
    windows: z
      .array(z.string().max(200))
      .min(1, 'give at least one window, or leave windows out')
      .max(MAX_MAINTENANCE_WINDOWS)
      .superRefine((specs, ctx) => {
        const parsed = [];
        for (const [i, spec] of specs.entries()) {
          try {
            parsed.push(parseMaintenanceWindow(spec));
          } catch (err) {
            if (!(err instanceof MaintenanceWindowError)) throw err;
            ctx.addIssue({ code: 'custom', path: [i], message: err.message });
          }
        }
        // A campaign whose windows never open (31 February) would wait until its deadline for nothing.
        if (specs.length > 0 && parsed.length === specs.length) {
          const state = windowStateAt(parsed, Date.now());
          if (!state.open && state.opensAt === null) ctx.addIssue({ code: 'custom', message: 'no window ever opens (check the day of month and month)' });
        }
      })
      .optional(),
  })
  .strict();
export type CampaignSchedule = z.infer<typeof CampaignSchedule>;

export const DEFAULT_REPLY_TIMEOUT_MS = 600_000;

/** A job retry rule: RetryRule with AWS IoT Jobs' limit of 10 retries per failure type. */
export const JobRetryRule = RetryRule.extend({ retries: z.number().int().min(0).max(10) });

export const ExpectReply = z.object({
  /** A delivered target without a final answer this long after delivery ends TIMED_OUT. */
  timeoutMs: durationMs.default(DEFAULT_REPLY_TIMEOUT_MS),
  /**
   * Retries per failure type (AWS `jobExecutionsRetryConfig`): an execution the device reported
   * FAILED, or that TIMED_OUT, is published again (same job id) after the backoff (docs/jobs.md).
   */
  retry: z.object({ failed: JobRetryRule.optional(), timedOut: JobRetryRule.optional() }).strict().optional(),
});
export type ExpectReply = z.infer<typeof ExpectReply>;

/** How often an open continuous campaign looks for matching devices whose notice it may have missed. */
export const DEFAULT_RESCAN_INTERVAL_MS = 300_000;

/** `true`, or the rescan interval of the devices it may have missed (`false`: not continuous). */
export const Continuous = z
  .union([z.boolean(), z.object({ rescanIntervalMs: durationMs.default(DEFAULT_RESCAN_INTERVAL_MS) }).strict()])
  .transform((c) => (c === false ? undefined : c === true ? { rescanIntervalMs: DEFAULT_RESCAN_INTERVAL_MS } : c));

export const CampaignRequest = z
  .object({
    campaignId: CampaignId.optional(),
    targets: z.union([
      z.object({ list: z.array(CampaignTarget).min(1, 'no targets').max(MAX_CAMPAIGN_TARGETS) }),
      z.object({ selector: TargetSelector }),
    ]),
    message: MessageTemplate,
    transport: Transport.default('rest'),
    rollout: Rollout.default({ batchSize: 500, concurrency: 4 }),
    retry: RetryPolicy.default(RetryPolicy.parse({})),
    offline: OfflinePolicy.default(OfflinePolicy.parse({})),
    abort: z.array(AbortCriterion).max(4).default([]),
    /** The campaign ends when this much time has passed since it started (default 24h with offline.wait). */
    deadlineMs: durationMs.optional(),
    /** A target that is still being retried this long after its first attempt ends as timed_out. */
    inProgressTimeoutMs: durationMs.optional(),
    schedule: CampaignSchedule.optional(),

    /** Targets report the job's execution (docs/jobs.md); the campaign ends when every delivered target answered or timed out. */
    expectReply: ExpectReply.optional(),
    /** A selector campaign that also reaches devices provisioned or tagged later, until it is closed (docs/campaigns.md). */
    continuous: Continuous.optional(),
    /**
     * Rollback on abort (docs/jobs.md): when the campaign ends aborted, campaign `<id>-rollback`
     * sends this message to the targets whose execution SUCCEEDED or was IN_PROGRESS.
     */
    rollback: z.object({ message: MessageTemplate }).strict().optional(),
  })
  .refine((r) => r.rollback === undefined || r.expectReply !== undefined, {
    message: 'needs expectReply: the rollback goes to the targets that reported SUCCEEDED or IN_PROGRESS',
    path: ['rollback'],
  })
  .refine((r) => r.rollback === undefined || r.campaignId === undefined || r.campaignId.length <= 64 - ROLLBACK_SUFFIX.length, {
    message: `must be at most ${64 - ROLLBACK_SUFFIX.length} characters with a rollback (its rollback campaign is <id>${ROLLBACK_SUFFIX})`,
    path: ['campaignId'],
  })
  .refine((r) => r.rollout.maximumPerMinute === undefined || r.rollout.exponentialRate === undefined || r.rollout.exponentialRate.baseRatePerMinute <= r.rollout.maximumPerMinute, {
    message: 'exponentialRate.baseRatePerMinute must not exceed maximumPerMinute',
    path: ['rollout', 'exponentialRate'],
  })
  .refine((r) => !r.continuous || 'selector' in r.targets, {
    message: 'a continuous campaign selects its targets (a tag and/or a prefix); a list of targets cannot grow',
    path: ['continuous'],
  });
export type CampaignRequest = z.output<typeof CampaignRequest>;
export type CampaignRequestInput = z.input<typeof CampaignRequest>;

/** What the activities apply to each target's outcome (part of the workflow input, small). */
export interface TargetPolicy {
  retry: RetryPolicy;
  offline: OfflinePolicy;
  inProgressTimeoutMs?: number;
}

/** The workflow's settings: everything but the targets and the message (both stored in MongoDB). */
export interface CampaignSettings {
  campaignId: string;
  transport: Transport;
  rollout: Rollout;
  policy: TargetPolicy;
  abort: AbortCriterion[];
  deadlineMs?: number;
  /** Set for selector campaigns: the workflow resolves the targets from device records. */
  selector?: TargetSelector;
  /** The start that stored the campaign (when absent, batches skip the ownership check). */
  startAttempt?: string;
  /** Scheduling (CampaignSchedule, checked): no batch starts before `startAt` or outside every window. */
  schedule?: ScheduleSettings;
  /** Device-reported execution: the job id is the campaign id. */
  replies?: ReplySettings;
  /** Start the rollback campaign `<id>-rollback` if this one ends aborted (its message is stored with the campaign). */
  rollback?: boolean;
  /** Set on a rollback campaign: the campaign it rolls back. */
  rollbackOf?: string;
  /** Continuous campaigns (selector only): devices that match later join until the campaign is closed. */
  continuous?: ContinuousSettings;
}

export interface ContinuousSettings {
  /** How often the workflow looks for matching devices it was not told about. */
  rescanMs: number;
}

export interface ScheduleSettings {
  /** Epoch ms. */
  startAt?: number;
  /** Maintenance window specs, parsed again by the workflow (src/domain/maintenance-window.ts is workflow-safe). */
  windows?: string[];
}

export interface ReplySettings {
  timeoutMs: number;
  /** Retries per failure type (ExpectReply.retry). */
  retry?: JobRetrySettings;
  /** How often the workflow reads the execution counts (and times out overdue targets). */
  pollMs: number;
}

/**
 * Targets per chunk for a new campaign: at most CAMPAIGN_CHUNK_SIZE, at least one bulk request,
 * and as many chunks as fill whole rounds of `concurrency` batches, so that the last round keeps
 * every slot busy (25,000 targets at concurrency 4: 12 chunks of 2,084, not 10 of 2,500 with the
 * last two published in a round of their own).
 */
export function chunkSizeFor(total: number, rollout: Pick<Rollout, 'batchSize' | 'concurrency'>): number {
  const rounds = Math.max(1, Math.ceil(total / (rollout.concurrency * CAMPAIGN_CHUNK_SIZE)));
  const even = Math.ceil(total / (rounds * rollout.concurrency));
  return Math.min(CAMPAIGN_CHUNK_SIZE, Math.max(rollout.batchSize, even, 1));
}

export const CampaignState = z.enum(['created', 'running', 'paused', 'completed', 'cancelled', 'aborted']);
export type CampaignState = z.infer<typeof CampaignState>;
export type FinalCampaignState = Extract<CampaignState, 'completed' | 'cancelled' | 'aborted'>;

/** A campaign in one of these states has ended. */
export function isFinalCampaignState(state: CampaignState): state is FinalCampaignState {
  return state === 'completed' || state === 'cancelled' || state === 'aborted';
}
