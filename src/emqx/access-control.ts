/**
 * EMQX's authentication chain and authorization configuration, and the one setup the project
 * needs (`device-ops emqx setup`, and the dev broker at start):
 * - the `password_based:built_in_database` authenticator with `user_id_type = clientid`, so a
 *   device's credentials only ever let in its own client id, and EMQX's default password hash,
 *   sha256 with a prefix salt;
 * - the `built_in_database` authorization source, first in the chain of sources;
 * - `authorization.no_match = deny`.
 * API: https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authn/emqx_authn_api.erl,
 * apps/emqx_auth/src/emqx_authz/emqx_authz_api_sources.erl and emqx_authz_api_settings.erl.
 */
import { z } from 'zod';
import { EmqxNotConfiguredError } from './errors';
import { apiPath, type CallOptions, type EmqxHttp } from './http';
import { parseMaybeWrapped } from './parse';

export const AUTHENTICATOR_ID = 'password_based:built_in_database';
const AUTHENTICATOR_PATH = apiPath`/authentication/${AUTHENTICATOR_ID}`;

/** The password hash the project's authenticator uses: EMQX's default. */
export const PASSWORD_HASH = { name: 'sha256', salt_position: 'prefix' } as const;

/** The authenticator `emqx setup` creates. */
export const PROJECT_AUTHENTICATOR = {
  mechanism: 'password_based',
  backend: 'built_in_database',
  user_id_type: 'clientid',
  password_hash_algorithm: PASSWORD_HASH,
  enable: true,
} as const;

export const Authenticator = z.looseObject({
  id: z.string().optional(),
  mechanism: z.string(),
  backend: z.string().optional(),
  enable: z.boolean().default(true),
  user_id_type: z.string().default('username'),
  password_hash_algorithm: z.looseObject({ name: z.string(), salt_position: z.string().optional() }).default({ ...PASSWORD_HASH }),
});
export type Authenticator = z.infer<typeof Authenticator>;

export const AuthzSettings = z.looseObject({
  no_match: z.enum(['allow', 'deny']),
  deny_action: z.string(),
  cache: z.looseObject({}).optional(),
});
export type AuthzSettings = z.infer<typeof AuthzSettings>;

export const AuthzSource = z.looseObject({ type: z.string(), enable: z.boolean().default(true) });
export type AuthzSource = z.infer<typeof AuthzSource>;

/** The authenticator, or null when EMQX has none with that id. */
export async function getAuthenticator(http: EmqxHttp, opts: CallOptions = {}): Promise<Authenticator | null> {
  try {
    const res = await http.request({ method: 'GET', path: AUTHENTICATOR_PATH, signal: opts.signal });
    return parseMaybeWrapped(Authenticator, res, { method: 'GET', path: AUTHENTICATOR_PATH });
  } catch (err) {
    if (err instanceof EmqxNotConfiguredError) return null;
    throw err;
  }
}

export async function createAuthenticator(http: EmqxHttp, config: Record<string, unknown>, opts: CallOptions = {}): Promise<void> {
  await http.request({ method: 'POST', path: '/authentication', body: config, signal: opts.signal });
}

export async function getAuthzSettings(http: EmqxHttp, opts: CallOptions = {}): Promise<AuthzSettings> {
  const path = '/authorization/settings';
  return parseMaybeWrapped(AuthzSettings, await http.request({ method: 'GET', path, signal: opts.signal }), { method: 'GET', path });
}

/** PUT needs the whole settings object (`settings/2` matches no_match, deny_action and cache). */
export async function putAuthzSettings(http: EmqxHttp, settings: AuthzSettings, opts: CallOptions = {}): Promise<void> {
  await http.request({ method: 'PUT', path: '/authorization/settings', body: settings, signal: opts.signal });
}

export async function listAuthzSources(http: EmqxHttp, opts: CallOptions = {}): Promise<AuthzSource[]> {
  const path = '/authorization/sources';
  const res = await http.request({ method: 'GET', path, signal: opts.signal });
  return parseMaybeWrapped(z.looseObject({ sources: z.array(AuthzSource) }), res, { method: 'GET', path }).sources;
}

/** Prepends a source: it is checked first. */
export async function createAuthzSource(http: EmqxHttp, source: Record<string, unknown>, opts: CallOptions = {}): Promise<void> {
  await http.request({ method: 'POST', path: '/authorization/sources', body: source, signal: opts.signal });
}

export async function updateAuthzSource(http: EmqxHttp, source: AuthzSource, opts: CallOptions = {}): Promise<void> {
  await http.request({ method: 'PUT', path: apiPath`/authorization/sources/${source.type}`, body: source, signal: opts.signal });
}

export async function moveAuthzSourceToFront(http: EmqxHttp, type: string, opts: CallOptions = {}): Promise<void> {
  await http.request({ method: 'POST', path: apiPath`/authorization/sources/${type}/move`, body: { position: 'front' }, signal: opts.signal });
}

/** What is wrong with an authenticator for the project, or nothing. */
export function authenticatorProblems(authenticator: Authenticator): string[] {
  const problems: string[] = [];
  if (!authenticator.enable) problems.push('it is disabled');
  if (authenticator.user_id_type !== 'clientid') {
    problems.push(`user_id_type is ${authenticator.user_id_type}, not clientid (a device's credentials would work under any client id)`);
  }
  const algorithm = authenticator.password_hash_algorithm;
  if (algorithm.name !== PASSWORD_HASH.name || (algorithm.salt_position ?? 'prefix') !== PASSWORD_HASH.salt_position) {
    problems.push(`password_hash_algorithm is ${algorithm.name}${algorithm.salt_position ? `/${algorithm.salt_position}` : ''}, not sha256/prefix`);
  }
  return problems;
}

export type SetupStep = 'created' | 'unchanged' | 'updated';

export interface AccessControlSetup {
  authenticator: SetupStep;
  authzSource: SetupStep;
  noMatch: SetupStep;
  fileSource: 'absent' | 'disabled' | 'enabled';
}

export interface AccessControlOptions extends CallOptions {
  /** `authorization.no_match`; default deny. */
  noMatch?: 'allow' | 'deny';
  /** Disable the `file` source (stock acl.conf ends with `{allow, all}`, so no_match never applies). */
  disableFileSource?: boolean;
}

/** Thrown when an existing authenticator has settings the project cannot work with. */
export class AuthenticatorMismatchError extends Error {
  constructor(readonly problems: string[]) {
    super(
      `EMQX's ${AUTHENTICATOR_ID} authenticator does not fit: ${problems.join('; ')}. ` +
        'Its users were made for those settings, so setup does not change them: update it in the dashboard ' +
        `(or PUT /api/v5/authentication/${encodeURIComponent(AUTHENTICATOR_ID)}) to user_id_type clientid and sha256 with a prefix salt, ` +
        'then re-provision the devices, or delete it and run setup again',
    );
  }
}

/**
 * Creates what is missing; idempotent. An existing authenticator with another `user_id_type` or
 * algorithm is refused (`AuthenticatorMismatchError`), not changed: its users would stop working.
 */
export async function ensureAccessControl(http: EmqxHttp, opts: AccessControlOptions = {}): Promise<AccessControlSetup> {
  const existing = await getAuthenticator(http, opts);
  let authenticator: SetupStep = 'unchanged';
  if (!existing) {
    await createAuthenticator(http, { ...PROJECT_AUTHENTICATOR }, opts);
    authenticator = 'created';
  } else {
    const problems = authenticatorProblems(existing);
    if (problems.length > 0) throw new AuthenticatorMismatchError(problems);
  }

  const sources = await listAuthzSources(http, opts);
  let authzSource: SetupStep = 'unchanged';
  const builtIn = sources.find((s) => s.type === 'built_in_database');
  if (!builtIn) {
    await createAuthzSource(http, { type: 'built_in_database', enable: true, max_rules: 100 }, opts);
    authzSource = 'created';
  } else {
    if (!builtIn.enable) {
      await updateAuthzSource(http, { ...builtIn, enable: true }, opts);
      authzSource = 'updated';
    }
    if (sources[0]?.type !== 'built_in_database') {
      await moveAuthzSourceToFront(http, 'built_in_database', opts);
      authzSource = 'updated';
    }
  }

  const file = sources.find((s) => s.type === 'file');
  let fileSource: AccessControlSetup['fileSource'] = file ? (file.enable ? 'enabled' : 'disabled') : 'absent';
  if (file?.enable && opts.disableFileSource) {
    // PUT takes the source as GET shows it; `rules` is the file's content, which EMQX writes back.
    await updateAuthzSource(http, { ...file, enable: false }, opts);
    fileSource = 'disabled';
  }

  const want = opts.noMatch ?? 'deny';
  const settings = await getAuthzSettings(http, opts);
  let noMatch: SetupStep = 'unchanged';
  if (settings.no_match !== want) {
    await putAuthzSettings(http, { ...settings, no_match: want }, opts);
    noMatch = 'updated';
  }
  return { authenticator, authzSource, noMatch, fileSource };
}
