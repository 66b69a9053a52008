/**
 * The HTTP transport for the EMQX REST API: one undici pool per client, HTTP Basic auth, JSON in and
 * out, a deadline per request, and the mapping of failures to typed errors (errors.ts).
 */
import { Pool, type Dispatcher } from 'undici';
import { EmqxInputError, EmqxUnavailableError, errorFromResponse, redactSecrets, type HttpMethod } from './errors';

export const DEFAULT_TIMEOUT_MS = 10_000;
export const DEFAULT_CONNECTIONS = 16;

export type QueryScalar = string | number | boolean;
/** Query parameters; an array repeats the key (`clientid=a&clientid=b`, as `GET /clients` takes it). */
export type Query = Readonly<Record<string, QueryScalar | readonly QueryScalar[] | undefined>>;

export interface CallOptions {
  /** Aborts the call; the call then rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface EmqxRequest extends CallOptions {
  method: HttpMethod;
  /** Path below the base URL, with parameters already encoded (build it with `apiPath`). */
  path: string;
  query?: Query;
  body?: unknown;
  /** `false` for the few endpoints that need no credentials (`GET /status`). */
  auth?: boolean;
  /** Request values (passwords, tokens) that must never appear in an error message. */
  secrets?: readonly string[];
}

export interface EmqxResponse {
  status: number;
  /** Parsed JSON, the raw text when the body is not JSON, or `undefined` when empty. */
  body: unknown;
}

export interface EmqxTransportOptions {
  /** e.g. `http://127.0.0.1:18083/api/v5` or `https://xxx.emqxsl.com:8443/api/v5`; paths are appended. */
  baseUrl: string;
  apiKey: string;
  apiSecret: string;
  /** Deadline for each request, connect to last body byte. Default 10 s. */
  timeoutMs?: number;
  /** Most sockets kept open to EMQX. Default 16. */
  connections?: number;
  /** Use this dispatcher instead of a private pool (tests, custom TLS). It is not closed by `close()`. */
  dispatcher?: Dispatcher;
}

/**
 * Builds an API path from a template, URL-encoding each parameter:
 * `apiPath`/clients/${clientid}/subscribe`` → `/clients/a%2Fb/subscribe`.
 */
export function apiPath(strings: TemplateStringsArray, ...params: readonly string[]): string {
  return strings.reduce((out, part, i) => out + part + (i < params.length ? encodeURIComponent(params[i] ?? '') : ''), '');
}

function appendQuery(path: string, query: Query | undefined): string {
  if (!query) return path;
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) continue;
    const values: readonly QueryScalar[] = Array.isArray(value) ? (value as readonly QueryScalar[]) : [value as QueryScalar];
    for (const v of values) search.append(key, String(v));
  }
  const qs = search.toString();
  return qs ? `${path}?${qs}` : path;
}

function parseBody(text: string): unknown {
  if (text.length === 0) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);
/**
 * Failures that happen before a request can reach EMQX: no connection was made. Every other
 * transport failure (a deadline, a connection reset or closed while waiting) may come after EMQX
 * received and applied the request, so its outcome is unknown. A deadline that expires while the
 * request still waits for a free pooled connection is counted as unknown too: undici does not say
 * whether the request was written.
 */
const NOT_SENT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function parseBaseUrl(baseUrl: string): URL {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch {
    throw new EmqxInputError('baseUrl: must be an absolute http(s) URL', { status: 0, code: 'INVALID_INPUT' });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new EmqxInputError('baseUrl: must use http or https', { status: 0, code: 'INVALID_INPUT' });
  }
  if (url.username || url.password) {
    throw new EmqxInputError('baseUrl: must not embed credentials; pass apiKey/apiSecret', { status: 0, code: 'INVALID_INPUT' });
  }
  return url;
}

function positiveInt(value: number | undefined, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) {
    throw new EmqxInputError(`${field}: must be a positive integer`, { status: 0, code: 'INVALID_INPUT' });
  }
  return value;
}

export class EmqxHttp {
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  readonly #origin: string;
  readonly #basePath: string;
  readonly #authorization: string;
  readonly #secrets: readonly string[];
  readonly #timeoutMs: number;

  constructor(opts: EmqxTransportOptions) {
    const url = parseBaseUrl(opts.baseUrl);
    if (!opts.apiKey) throw new EmqxInputError('apiKey: must be a non-empty string', { status: 0, code: 'INVALID_INPUT' });
    if (!opts.apiSecret) throw new EmqxInputError('apiSecret: must be a non-empty string', { status: 0, code: 'INVALID_INPUT' });
    this.#timeoutMs = positiveInt(opts.timeoutMs, DEFAULT_TIMEOUT_MS, 'timeoutMs');
    const connections = positiveInt(opts.connections, DEFAULT_CONNECTIONS, 'connections');
    this.#origin = url.origin;
    this.#basePath = url.pathname.replace(/\/+$/, '');
    const credentials = Buffer.from(`${opts.apiKey}:${opts.apiSecret}`).toString('base64');
    this.#authorization = `Basic ${credentials}`;
    this.#secrets = [opts.apiSecret, credentials];
    this.#ownsDispatcher = opts.dispatcher === undefined;
    this.#dispatcher =
      opts.dispatcher ??
      new Pool(this.#origin, {
        connections,
        pipelining: 1,
        keepAliveTimeout: 10_000,
        keepAliveMaxTimeout: 60_000,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
        connect: { timeout: this.#timeoutMs },
      });
  }

  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /** Sends one request and returns whatever status came back; throws only when no answer arrived. */
  async send(req: EmqxRequest): Promise<EmqxResponse> {
    const deadline = AbortSignal.timeout(this.#timeoutMs);
    const signal = req.signal ? AbortSignal.any([req.signal, deadline]) : deadline;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (req.auth !== false) headers.authorization = this.#authorization;
    let body: string | undefined;
    if (req.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(req.body);
    }
    try {
      const res = await this.#dispatcher.request({
        origin: this.#origin,
        path: appendQuery(this.#basePath + req.path, req.query),
        method: req.method,
        headers,
        body,
        signal,
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
      });
      const text = await res.body.text();
      return { status: res.statusCode, body: parseBody(text) };
    } catch (err) {
      throw this.#transportError(req, err, deadline);
    }
  }

  /** Sends one request; any status outside 2xx becomes a typed `EmqxError`. */
  async request(req: EmqxRequest): Promise<EmqxResponse> {
    const res = await this.send(req);
    if (res.status >= 200 && res.status < 300) return res;
    throw errorFromResponse({ ...res, method: req.method, path: req.path, secrets: this.secretsOf(req) });
  }

  /** Every value that must be scrubbed from messages about this request. */
  secretsOf(req: Pick<EmqxRequest, 'secrets'>): readonly string[] {
    return req.secrets ? [...this.#secrets, ...req.secrets] : this.#secrets;
  }

  async close(): Promise<void> {
    if (this.#ownsDispatcher) await this.#dispatcher.close();
  }

  #transportError(req: EmqxRequest, err: unknown, deadline: AbortSignal): unknown {
    if (req.signal?.aborted) return req.signal.reason as unknown;
    const where = `EMQX ${req.method} ${req.path}`;
    const details = { status: 0, method: req.method, path: req.path, mayHaveApplied: !NOT_SENT_CODES.has(errorCode(err) ?? '') };
    if (deadline.aborted || TIMEOUT_CODES.has(errorCode(err) ?? '')) {
      return new EmqxUnavailableError(`${where} timed out after ${this.#timeoutMs} ms`, { ...details, code: 'TIMEOUT' });
    }
    // The cause is not attached: some transport errors print request headers. Only a scrubbed text is kept.
    const reason = redactSecrets(errorText(err), this.secretsOf(req));
    const code = errorCode(err) ?? 'CONNECTION_ERROR';
    return new EmqxUnavailableError(`${where} failed: ${code}: ${reason}`, { ...details, code: 'CONNECTION_ERROR' });
  }
}
