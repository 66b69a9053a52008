/**
 * Device credentials: users of the `password_based:built_in_database` authenticator
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authn/emqx_authn_api.erl).
 * Deleting a user or changing its password does not disconnect a connected client; kick it too.
 */
import { EmqxConflictError, falseIfNotFound, nullIfNotFound } from './errors';
import { apiPath, type CallOptions, type EmqxHttp } from './http';
import { HashedUserEntry, NewUser, NonEmpty, PlainUserEntry, UserListQuery, UserUpdate } from './inputs';
import { fetchPage, paginate, type PaginateOptions } from './pagination';
import { parseInput, parseMaybeWrapped } from './parse';
import { AuthUser, ImportUsersCounts, type Page } from './schemas';

/** The authenticator id `password_based:built_in_database`, URL-encoded as the docs write it. */
const USERS = '/authentication/password_based%3Abuilt_in_database/users';
const IMPORT = '/authentication/password_based%3Abuilt_in_database/import_users';

const userPath = (userId: string) => `${USERS}${apiPath`/${userId}`}`;

export type UserFilter = Omit<UserListQuery, 'page' | 'limit'>;

export interface ImportUsersResult extends ImportUsersCounts {
  /** False when EMQX (before 5.8.2) answered 204 and the counts were derived from the request. */
  countsReported: boolean;
}

export async function listUsers(http: EmqxHttp, query: UserListQuery = {}, opts: CallOptions = {}): Promise<Page<AuthUser>> {
  return fetchPage(http, USERS, parseInput(UserListQuery, query, 'query'), AuthUser, opts);
}

export function iterateUsers(http: EmqxHttp, filter: UserFilter = {}, opts: PaginateOptions = {}): AsyncGenerator<AuthUser, void, undefined> {
  return paginate(http, USERS, parseInput(UserListQuery, filter, 'filter'), AuthUser, opts);
}

/** The user, or `null` when it does not exist. */
export async function getUser(http: EmqxHttp, userId: string, opts: CallOptions = {}): Promise<AuthUser | null> {
  const path = userPath(parseInput(NonEmpty, userId, 'userId'));
  return nullIfNotFound(
    http.request({ method: 'GET', path, signal: opts.signal }).then((res) => parseMaybeWrapped(AuthUser, res, { method: 'GET', path })),
  );
}

/** Creates a user; throws `EmqxConflictError` when it exists. */
export async function createUser(http: EmqxHttp, user: NewUser, opts: CallOptions = {}): Promise<AuthUser> {
  const body = parseInput(NewUser, user, 'user');
  const res = await http.request({ method: 'POST', path: USERS, body, signal: opts.signal, secrets: [body.password] });
  if (res.body === undefined) return { user_id: body.user_id, is_superuser: body.is_superuser ?? false };
  return parseMaybeWrapped(AuthUser, res, { method: 'POST', path: USERS });
}

/**
 * Sets a user's password (and superuser flag). EMQX answers 200 with the user or (per Cloud docs)
 * 204, so nothing is returned; read it back with `getUser` if needed.
 */
export async function updateUser(http: EmqxHttp, userId: string, update: UserUpdate, opts: CallOptions = {}): Promise<void> {
  const path = userPath(parseInput(NonEmpty, userId, 'userId'));
  const body = parseInput(UserUpdate, update, 'update');
  await http.request({ method: 'PUT', path, body, signal: opts.signal, secrets: [body.password] });
}

/** Throws `EmqxNotFoundError` when the user does not exist; see `deleteUserIfExists`. */
export async function deleteUser(http: EmqxHttp, userId: string, opts: CallOptions = {}): Promise<void> {
  const path = userPath(parseInput(NonEmpty, userId, 'userId'));
  await http.request({ method: 'DELETE', path, signal: opts.signal });
}

/** Creates the user, or on 409 sets its password and flag: safe to repeat. */
export async function upsertUser(http: EmqxHttp, user: NewUser, opts: CallOptions = {}): Promise<'created' | 'updated'> {
  const body = parseInput(NewUser, user, 'user');
  try {
    await createUser(http, body, opts);
    return 'created';
  } catch (err) {
    if (!(err instanceof EmqxConflictError)) throw err;
  }
  await updateUser(http, body.user_id, { password: body.password, is_superuser: body.is_superuser ?? false }, opts);
  return 'updated';
}

/** Deletes the user; `false` when there was none (404 means done). */
export async function deleteUserIfExists(http: EmqxHttp, userId: string, opts: CallOptions = {}): Promise<boolean> {
  return falseIfNotFound(deleteUser(http, userId, opts));
}

/**
 * Batch import (5.5+, JSON body). `type` is always sent: EMQX reads a missing one as `hash`
 * (emqx_authn_user_import_api:password_type/1). Existing users are overwritten. `plain` entries carry `password`,
 * `hash` entries `password_hash` (+ `salt`). 5.8.2+ answers with counts; older versions answer 204,
 * and then every entry is counted as a success. An empty list sends nothing.
 */
export async function importUsers(http: EmqxHttp, type: 'plain', entries: readonly PlainUserEntry[], opts?: CallOptions): Promise<ImportUsersResult>;
export async function importUsers(http: EmqxHttp, type: 'hash', entries: readonly HashedUserEntry[], opts?: CallOptions): Promise<ImportUsersResult>;
export async function importUsers(
  http: EmqxHttp,
  type: 'plain' | 'hash',
  entries: readonly (PlainUserEntry | HashedUserEntry)[],
  opts: CallOptions = {},
): Promise<ImportUsersResult> {
  const body = type === 'plain' ? parseInput(PlainUserEntry.array(), entries, 'entries') : parseInput(HashedUserEntry.array(), entries, 'entries');
  const total = body.length;
  if (total === 0) return { total, success: 0, override: 0, skipped: 0, failed: 0, countsReported: false };
  const secrets = body.map((entry) => ('password' in entry ? entry.password : entry.password_hash));
  const res = await http.request({ method: 'POST', path: IMPORT, query: { type }, body, signal: opts.signal, secrets });
  if (res.body === undefined) return { total, success: total, override: 0, skipped: 0, failed: 0, countsReported: false };
  return { ...parseMaybeWrapped(ImportUsersCounts, res, { method: 'POST', path: IMPORT }), countsReported: true };
}
