import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { AUTHENTICATOR_ID } from '../../auth-config';
import { apiError, badRequest, notFound, parseBody } from '../errors';
import { booleanParam, pageRequest, paginate, queryValue, type Query } from '../pagination';
import { noContent } from '../replies';

/**
 * Built-in database authentication users. The authenticator id appears URL-encoded
 * (`password_based%3Abuilt_in_database`) or plain; both reach the same routes. Without the
 * authenticator, EMQX answers user calls from `emqx_authn_chains:call_authenticator/4` through
 * `emqx_authn_api:serialize_error/1`: 404 "Authenticator not found in the 'global' scope" while
 * the global chain has never existed, and 400 `{not_found,{authenticator,...}}` once it has
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authn/emqx_authn_api.erl).
 */

/** hocon's `boolean()`: a boolean or its text. */
const Superuser = z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]).optional();
// check_schema => true (emqx_authn_api.erl api_spec/0, fields(request_user_create) and
// fields(request_user_update)): a field the schema does not know is a 400.
const UserCreate = z.strictObject({
  user_id: z.string().min(1, 'must not be empty'),
  password: z.string(),
  is_superuser: Superuser.default(false),
});
const UserUpdate = z.strictObject({ password: z.string(), is_superuser: Superuser });
const PlainImport = z.array(z.object({ user_id: z.string().min(1), password: z.string(), is_superuser: Superuser }));
const HashImport = z.array(
  z.object({
    user_id: z.string().min(1),
    password_hash: z.string().min(1, 'must not be empty'),
    salt: z.string().optional(),
    is_superuser: Superuser,
  }),
);

type AuthnParams = { authenticator: string };
type UserParams = AuthnParams & { userId: string };

export function registerAuthnUserRoutes(app: FastifyInstance, { users, authentication }: ApiContext): void {
  const requireBuiltInDatabase = (authenticator: string): void => {
    if (authenticator === AUTHENTICATOR_ID && authentication.authenticator) return;
    if (!authentication.chainExists) throw notFound("Authenticator not found in the 'global' scope");
    throw badRequest(`User error: {not_found,{authenticator,<<"${authenticator}">>}}`);
  };

  app.get<{ Params: AuthnParams; Querystring: Query }>('/api/v5/authentication/:authenticator/users', (request) => {
    requireBuiltInDatabase(request.params.authenticator);
    const page = pageRequest(request.query);
    const like = queryValue(request.query, 'like_user_id');
    const superuser = booleanParam(request.query, 'is_superuser');
    const matching = users
      .list()
      .filter((u) => (like === undefined || u.user_id.includes(like)) && (superuser === undefined || u.is_superuser === superuser));
    return paginate(matching, page, { withCount: like === undefined });
  });

  app.post<{ Params: AuthnParams }>('/api/v5/authentication/:authenticator/users', (request, reply) => {
    requireBuiltInDatabase(request.params.authenticator);
    const body = parseBody(UserCreate, request.body);
    const created = users.create(body.user_id, body.password, body.is_superuser);
    if (!created) throw apiError(409, 'ALREADY_EXISTS', 'User already exists');
    reply.code(201);
    return created;
  });

  app.get<{ Params: UserParams }>('/api/v5/authentication/:authenticator/users/:userId', (request) => {
    requireBuiltInDatabase(request.params.authenticator);
    const user = users.get(request.params.userId);
    if (!user) throw notFound('User not found');
    return user;
  });

  app.put<{ Params: UserParams }>('/api/v5/authentication/:authenticator/users/:userId', (request) => {
    requireBuiltInDatabase(request.params.authenticator);
    const body = parseBody(UserUpdate, request.body);
    const updated = users.update(request.params.userId, { password: body.password, isSuperuser: body.is_superuser });
    if (!updated) throw notFound('User not found');
    return updated;
  });

  app.delete<{ Params: UserParams }>('/api/v5/authentication/:authenticator/users/:userId', (request, reply) => {
    requireBuiltInDatabase(request.params.authenticator);
    if (!users.delete(request.params.userId)) throw notFound('User not found');
    noContent(reply);
  });

  /**
   * 5.8.2+ behaviour: 200 with counts; an empty list is an error. A missing `type` means `hash`
   * (emqx_authn_user_import_api:password_type/1; the API spec is not checked).
   */
  app.post<{ Params: AuthnParams; Querystring: Query }>('/api/v5/authentication/:authenticator/import_users', (request) => {
    requireBuiltInDatabase(request.params.authenticator);
    const type = queryValue(request.query, 'type') === 'plain' ? 'plain' : 'hash';
    if (!Array.isArray(request.body)) throw badRequest('the body must be a JSON array of users');
    if (request.body.length === 0) throw badRequest('empty_users');
    if (type === 'plain') return users.importPlain(parseBody(PlainImport, request.body));
    return users.importHashed(parseBody(HashImport, request.body));
  });
}
