import { z } from 'zod';
import { parseDurationMs } from '../../../src/config';
import { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_PIPELINING, DEFAULT_POOL_SIZE, type ConnectionPoolSettings } from './http-connection-pool';

/**
 * HTTP connectors and HTTP actions of the rule engine
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_bridge_http/src/emqx_bridge_http_connector.erl). A
 * connector holds the base URL and shared headers; an action names its connector and adds path, method,
 * headers, body template and retry settings. Ids are `<type>:<name>`; only type `http` exists here.
 */

// emqx_resource.erl validate_name/2: no dots, shorter than 255.
const Name = z.string().max(254).regex(/^[A-Za-z0-9][A-Za-z0-9_-]*$/, 'must start with a letter or digit and use only letters, digits, _ and -');
const Headers = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String));
const DurationText = z
  .union([z.string(), z.number().int().nonnegative().transform((ms) => `${ms}ms`)])
  .refine((text) => /^\d+(ms|s|m|h|d)?$/.test(text.trim()), 'must be a duration such as 15s');
const Ttl = z.union([z.literal('infinity'), DurationText]);

export const HttpConnectorConfig = z.looseObject({
  url: z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }),
  headers: Headers.optional(),
  enable: z.boolean().optional(),
  description: z.string().optional(),
  connect_timeout: DurationText.optional(),
  pool_size: z.number().int().positive().optional(),
  pool_type: z.enum(['random', 'hash']).optional(),
  /** Requests one connection sends before the first is answered (HTTP/1.1 pipelining). */
  enable_pipelining: z.number().int().positive().optional(),
});
export const HttpConnectorCreate = HttpConnectorConfig.extend({ type: z.literal('http'), name: Name });

const HttpActionParameters = z.looseObject({
  path: z.string().optional(),
  method: z
    .string()
    .transform((m) => m.toLowerCase())
    .pipe(z.enum(['post', 'put', 'get', 'delete', 'patch']))
    .optional(),
  headers: Headers.optional(),
  body: z.string().optional(),
  max_retries: z.number().int().min(0).max(100).optional(),
  /** Deprecated since 5.0.26 and ignored: `resource_opts.request_ttl` is the request timeout. */
  request_timeout: DurationText.optional(),
});

export const HttpActionConfig = z.looseObject({
  connector: Name,
  parameters: HttpActionParameters.default({}),
  enable: z.boolean().optional(),
  description: z.string().optional(),
  resource_opts: z
    .looseObject({
      request_ttl: Ttl.optional(),
      inflight_window: z.number().int().positive().max(1024).optional(),
    })
    .optional(),
});
export const HttpActionCreate = HttpActionConfig.extend({ type: z.literal('http'), name: Name });

export type HttpConnectorConfig = z.infer<typeof HttpConnectorConfig>;
export type HttpActionConfig = z.infer<typeof HttpActionConfig>;

interface Stored<C> {
  name: string;
  config: C;
  createdAt: number;
  lastModifiedAt: number;
}

/** Everything one webhook request needs, resolved from the current connector and action. */
export interface WebhookTarget {
  enabled: boolean;
  connectorName: string;
  baseUrl: string;
  path: string;
  method: string;
  /** Connector headers merged with action headers; action headers win. Lower-case names. */
  headers: Record<string, string>;
  bodyTemplate: string | undefined;
  maxRetries: number;
  /** Per request (headers and body), 0 for none: `request_ttl` (emqx_bridge_http_connector:do_create_http_action/1). */
  requestTimeoutMs: number;
  requestTtlMs: number;
  inflightWindow: number;
  /** The connector's connections (see HttpConnectionPool). */
  connection: ConnectionPoolSettings;
}

export const DEFAULT_MAX_RETRIES = 2;
/** EMQX's defaults (apps/emqx_resource/include/emqx_resource.hrl): request_ttl 45 s, inflight_window 100. */
export const DEFAULT_REQUEST_TTL_MS = 45_000;
export const DEFAULT_INFLIGHT_WINDOW = 100;

/** Splits `http:name`; undefined when the id is not of that form. */
export function parseResourceId(id: string): { type: string; name: string } | undefined {
  const colon = id.indexOf(':');
  if (colon <= 0 || colon === id.length - 1) return undefined;
  return { type: id.slice(0, colon), name: id.slice(colon + 1) };
}

export class HttpResourceStore {
  private readonly connectors = new Map<string, Stored<HttpConnectorConfig>>();
  private readonly actions = new Map<string, Stored<HttpActionConfig>>();

  listConnectors(): Stored<HttpConnectorConfig>[] {
    return [...this.connectors.values()];
  }

  getConnector(name: string): Stored<HttpConnectorConfig> | undefined {
    return this.connectors.get(name);
  }

  /** Create or replace; returns the stored record. */
  putConnector(name: string, config: HttpConnectorConfig): Stored<HttpConnectorConfig> {
    return putRecord(this.connectors, name, config);
  }

  deleteConnector(name: string): boolean {
    return this.connectors.delete(name);
  }

  actionsUsingConnector(name: string): string[] {
    return [...this.actions.values()].filter((a) => a.config.connector === name).map((a) => `http:${a.name}`);
  }

  listActions(): Stored<HttpActionConfig>[] {
    return [...this.actions.values()];
  }

  getAction(name: string): Stored<HttpActionConfig> | undefined {
    return this.actions.get(name);
  }

  putAction(name: string, config: HttpActionConfig): Stored<HttpActionConfig> {
    return putRecord(this.actions, name, config);
  }

  deleteAction(name: string): boolean {
    return this.actions.delete(name);
  }

  webhookTarget(actionName: string): WebhookTarget | undefined {
    const action = this.actions.get(actionName);
    const connector = action && this.connectors.get(action.config.connector);
    if (!action || !connector) return undefined;
    const parameters = action.config.parameters;
    const ttl = action.config.resource_opts?.request_ttl;
    const ttlMs = ttl === undefined ? DEFAULT_REQUEST_TTL_MS : ttl === 'infinity' ? Number.POSITIVE_INFINITY : parseDurationMs(ttl);
    return {
      enabled: action.config.enable !== false && connector.config.enable !== false,
      connectorName: connector.name,
      baseUrl: connector.config.url,
      path: parameters.path ?? '',
      method: parameters.method ?? 'post',
      headers: {
        'content-type': 'application/json',
        ...lowerCaseKeys(connector.config.headers ?? {}),
        ...lowerCaseKeys(parameters.headers ?? {}),
      },
      bodyTemplate: parameters.body,
      maxRetries: parameters.max_retries ?? DEFAULT_MAX_RETRIES,
      // The HTTP connector times each request out after request_ttl; parameters.request_timeout is ignored.
      requestTimeoutMs: Number.isFinite(ttlMs) ? ttlMs : 0,
      requestTtlMs: ttlMs,
      inflightWindow: action.config.resource_opts?.inflight_window ?? DEFAULT_INFLIGHT_WINDOW,
      connection: {
        origin: new URL(connector.config.url).origin,
        poolSize: connector.config.pool_size ?? DEFAULT_POOL_SIZE,
        pipelining: connector.config.enable_pipelining ?? DEFAULT_PIPELINING,
        poolType: connector.config.pool_type ?? 'random',
        connectTimeoutMs: connector.config.connect_timeout === undefined ? DEFAULT_CONNECT_TIMEOUT_MS : parseDurationMs(connector.config.connect_timeout),
      },
    };
  }
}

function putRecord<C>(map: Map<string, Stored<C>>, name: string, config: C): Stored<C> {
  const now = Date.now();
  const record = { name, config, createdAt: map.get(name)?.createdAt ?? now, lastModifiedAt: now };
  map.set(name, record);
  return record;
}

function lowerCaseKeys(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}

/** Joins the connector's base URL and the action's path the way EMQX does (base path kept). */
export function joinUrl(baseUrl: string, path: string): string {
  if (path === '') return baseUrl;
  return `${baseUrl.replace(/\/+$/, '')}/${path.replace(/^\/+/, '')}`;
}
