/**
 * Typed EMQX errors.
 *
 * Each class's `type` equals its class name, which is what Temporal records as the failure type of
 * an activity error, so retry policies can list them in `nonRetryableErrorTypes`, e.g.
 * `[EmqxBadRequestError.type, EmqxUnauthorizedError.type]`.
 *
 * Messages name the method, the path (never the query string) and EMQX's `code`/`message`; they never
 * carry the Authorization header, the API secret or a password (see `redactSecrets`).
 */

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface EmqxErrorDetails {
  /** HTTP status, or 0 when no response came back (timeout, connection error, bad input). */
  status: number;
  /** EMQX's error `code` (e.g. `CLIENTID_NOT_FOUND`), or one of ours (`TIMEOUT`, `CONNECTION_ERROR`, ...). */
  code: string;
  method?: HttpMethod;
  path?: string;
  /**
   * `/publish` errors carry an MQTT reason code instead of a string code
   * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_publish.erl).
   */
  reasonCode?: number;
  /**
   * The request was sent but its answer never came (a timeout or a connection lost while waiting),
   * so EMQX may have applied it. A retry of a non-idempotent call (a publish) may then repeat it.
   */
  mayHaveApplied?: boolean;
  cause?: unknown;
}

export class EmqxError extends Error {
  static readonly type: string = 'EmqxError';
  readonly type: string = 'EmqxError';
  readonly retryable: boolean = false;
  readonly status: number;
  readonly code: string;
  readonly method: HttpMethod | undefined;
  readonly path: string | undefined;
  readonly reasonCode: number | undefined;
  /** See `EmqxErrorDetails.mayHaveApplied`; `false` when EMQX answered or the request never left. */
  readonly mayHaveApplied: boolean;

  constructor(message: string, details: EmqxErrorDetails) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.type;
    this.status = details.status;
    this.code = details.code;
    this.method = details.method;
    this.path = details.path;
    this.reasonCode = details.reasonCode;
    this.mayHaveApplied = details.mayHaveApplied ?? false;
  }
}

/** 404: the user, client, rule, connector... does not exist. */
export class EmqxNotFoundError extends EmqxError {
  static override readonly type = 'EmqxNotFoundError';
  override readonly type = 'EmqxNotFoundError';
}

/**
 * EMQX lacks what the project needs: the `password_based:built_in_database` authenticator or the
 * `built_in_database` authorization source (a stock EMQX 5.8 has neither). EMQX says so with a
 * 404 `NOT_FOUND`, the same code as a missing user or rule, so the message tells them apart
 * (see `missingAccessControl`). Not retryable: someone must run `device-ops emqx setup`.
 */
export class EmqxNotConfiguredError extends EmqxError {
  static override readonly type = 'EmqxNotConfiguredError';
  override readonly type = 'EmqxNotConfiguredError';
}

/** 409 `ALREADY_EXISTS`, and 400 "already exists" on connectors, actions and rules. */
export class EmqxConflictError extends EmqxError {
  static override readonly type = 'EmqxConflictError';
  override readonly type = 'EmqxConflictError';
}

/** 400: EMQX rejected the request; retrying the same request will not help. */
export class EmqxBadRequestError extends EmqxError {
  static override readonly type = 'EmqxBadRequestError';
  override readonly type = 'EmqxBadRequestError';
}

/**
 * 401/403: wrong API key or secret, or the key's role does not allow the call
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_auth.erl).
 */
export class EmqxUnauthorizedError extends EmqxError {
  static override readonly type = 'EmqxUnauthorizedError';
  override readonly type = 'EmqxUnauthorizedError';
}

/** 429, 5xx, timeouts and connection errors: EMQX is (temporarily) not answering. Retryable. */
export class EmqxUnavailableError extends EmqxError {
  static override readonly type = 'EmqxUnavailableError';
  override readonly type = 'EmqxUnavailableError';
  override readonly retryable = true;
}

/** A 2xx answer whose body does not have the documented shape (a version we do not understand). */
export class EmqxResponseError extends EmqxError {
  static override readonly type = 'EmqxResponseError';
  override readonly type = 'EmqxResponseError';
}

/** The caller passed something invalid; nothing was sent. The message names the field. */
export class EmqxInputError extends EmqxError {
  static override readonly type = 'EmqxInputError';
  override readonly type = 'EmqxInputError';
}

/** True for errors worth retrying: EMQX unavailable, timeouts, connection errors. */
export function isRetryable(err: unknown): boolean {
  return err instanceof EmqxError && err.retryable;
}

/**
 * The error types a Temporal retry policy should not retry. Not-found and conflict are left out on
 * purpose: activities turn them into outcomes (404 on delete = done, 409 on create = update).
 */
export const nonRetryableEmqxErrorTypes: readonly string[] = [
  EmqxError.type,
  EmqxBadRequestError.type,
  EmqxUnauthorizedError.type,
  EmqxResponseError.type,
  EmqxInputError.type,
  EmqxNotConfiguredError.type,
];

const MAX_DETAIL_LENGTH = 300;

/** Replaces every occurrence of each secret with `***` and bounds the length. */
export function redactSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length > 0) out = out.split(secret).join('***');
  }
  return out.length > MAX_DETAIL_LENGTH ? `${out.slice(0, MAX_DETAIL_LENGTH)}...` : out;
}

interface ErrorBody {
  code?: string;
  message?: string;
  reasonCode?: number;
}

function readErrorBody(body: unknown): ErrorBody {
  if (typeof body === 'string') return { message: body };
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return {};
  const record = body as Record<string, unknown>;
  const out: ErrorBody = {};
  if (typeof record.code === 'string') out.code = record.code;
  if (typeof record.message === 'string') out.message = record.message;
  else if (record.message !== undefined) out.message = JSON.stringify(record.message);
  if (typeof record.reason_code === 'number') out.reasonCode = record.reason_code;
  return out;
}

function isAlreadyExists(err: ErrorBody): boolean {
  return err.code === 'ALREADY_EXISTS' || /already exist/i.test(err.message ?? '');
}

export interface FailedResponse {
  method: HttpMethod;
  path: string;
  status: number;
  body: unknown;
  /** Values from the request (passwords, tokens) that must not be echoed into the message. */
  secrets: readonly string[];
}

/**
 * What EMQX 5.8 answers about a user or rule when the authenticator or source itself is missing
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authn/emqx_authn_api.erl
 * `serialize_error/1`; apps/emqx_auth/src/emqx_authz/emqx_authz_api_sources.erl `with_source/2`,
 * the filter of every rules endpoint in apps/emqx_auth_mnesia/src/emqx_authz_api_mnesia.erl):
 * - 404 "Authenticator not found in the 'global' scope": no authenticator was ever created;
 * - 400 "User error: {not_found,{authenticator,...}}": the chain exists, this authenticator not;
 * - 404 "Authenticator '<id>' does not exist": `GET /authentication/{id}`;
 * - 404 "Not found: built_in_database": no built_in_database authorization source.
 * A missing user answers "User not found", missing rules "Not Found" / "ClientID Not Found".
 */
export function missingAccessControl(status: number, message: string): 'authenticator' | 'authz_source' | undefined {
  if (status === 404 && (/^Authenticator not found in the 'global' scope/.test(message) || /^Authenticator '.*' does not exist$/.test(message))) {
    return 'authenticator';
  }
  // `~p` may break a long term over lines: allow whitespace inside it.
  if (status === 400 && /^User error: \{not_found,\s*\{authenticator,/.test(message)) return 'authenticator';
  if (status === 404 && message === 'Not found: built_in_database') return 'authz_source';
  return undefined;
}

const SETUP_HINT = {
  authenticator: 'EMQX has no password_based:built_in_database authenticator',
  authz_source: 'EMQX has no built_in_database authorization source',
} as const;

/** Maps a non-2xx EMQX answer to the matching typed error. */
export function errorFromResponse(res: FailedResponse): EmqxError {
  const body = readErrorBody(res.body);
  const missing = missingAccessControl(res.status, body.message ?? '');
  if (missing) {
    return new EmqxNotConfiguredError(
      `${SETUP_HINT[missing]} (EMQX ${res.method} ${res.path} answered ${res.status} ${body.code ?? ''}: ${body.message ?? ''}): run \`device-ops emqx setup\``,
      { status: res.status, code: body.code ?? `HTTP_${res.status}`, method: res.method, path: res.path },
    );
  }
  const code = body.code ?? (body.reasonCode !== undefined ? `REASON_CODE_${body.reasonCode}` : `HTTP_${res.status}`);
  const detail = redactSecrets(body.message ?? '', res.secrets);
  const message = `EMQX ${res.method} ${res.path} failed with ${res.status} ${code}${detail ? `: ${detail}` : ''}`;
  const details: EmqxErrorDetails = { status: res.status, code, method: res.method, path: res.path };
  if (body.reasonCode !== undefined) details.reasonCode = body.reasonCode;

  if (res.status === 404) return new EmqxNotFoundError(message, details);
  if (res.status === 409) return new EmqxConflictError(message, details);
  if (res.status === 400 && isAlreadyExists(body)) return new EmqxConflictError(message, details);
  if (res.status === 400) return new EmqxBadRequestError(message, details);
  if (res.status === 401 || res.status === 403) return new EmqxUnauthorizedError(message, details);
  if (res.status === 429 || res.status >= 500) return new EmqxUnavailableError(message, details);
  return new EmqxError(message, details);
}

/** Resolves to `null` when the operation failed with 404: "get" of something that may not exist. */
export async function nullIfNotFound<T>(operation: Promise<T>): Promise<T | null> {
  try {
    return await operation;
  } catch (err) {
    if (err instanceof EmqxNotFoundError) return null;
    throw err;
  }
}

/** Resolves to `false` when the operation failed with 404: "delete" is done when nothing is there. */
export async function falseIfNotFound(operation: Promise<unknown>): Promise<boolean> {
  return (await nullIfNotFound(operation.then(() => true))) ?? false;
}
