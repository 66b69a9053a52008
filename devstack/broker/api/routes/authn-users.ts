import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ApiContext } from '../context';
import { apiError, badRequest, notFound, parseBody } from '../errors';
import { booleanParam, pageRequest, paginate, queryValue, type Query } from '../pagination';
import { noContent } from '../replies';

/**
 * Built-in database authentication users (reference §2). The authenticator id appears URL-encoded
 * (`password_based%3Abuilt_in_database`) or plain; both reach the same routes.
 */

const AUTHENTICATOR_ID = 'password_based:built_in_database';
const AUTHENTICATOR_CONFIG = {
  id: AUTHENTICATOR_ID,
  mechanism: 'password_based',
  backend: 'built_in_database',
  user_id_type: 'username',
  password_hash_algorithm: { name: 'sha256', salt_position: 'suffix' },
  enable: true,
};

const UserCreate = z.object({
  user_id: z.string().min(1, 'must not be empty'),
  password: z.string(),
  is_superuser: z.boolean().default(false),
});
const UserUpdate = z.object({ password: z.string(), is_superuser: z.boolean().optional() });
const Superuser = z.union([z.boolean(), z.enum(['true', 'false']).transform((v) => v === 'true')]).optional();
const PlainImport = z.array(z.object({ user_id: z.string().min(1), password: z.string(), is_superuser: Superuser }));
const HashImport = z.array(
  z.object({
    user_id: z.string().min(1),
    password_hash: z.string().regex(/^[0-9A-Fa-f]{64}$/, 'must be a hex sha256 digest'),
    salt: z.string().optional(),
    is_superuser: Superuser,
  }),
);

type AuthnParams = { authenticator: string };
type UserParams = AuthnParams & { userId: string };

function requireBuiltInDatabase(authenticator: string): void {
  if (authenticator !== AUTHENTICATOR_ID) throw notFound('Authenticator not found');
}

export function registerAuthnUserRoutes(app: FastifyInstance, { users }: ApiContext): void {
  app.get('/api/v5/authentication', () => [AUTHENTICATOR_CONFIG]);

  app.post('/api/v5/authentication', (request) => {
    const body = parseBody(z.looseObject({ mechanism: z.string(), backend: z.string() }), request.body);
    if (`${body.mechanism}:${body.backend}` === AUTHENTICATOR_ID) {
      throw apiError(409, 'ALREADY_EXISTS', `Authenticator '${AUTHENTICATOR_ID}' already exists`);
    }
    throw badRequest('only the password_based:built_in_database authenticator is available in the dev broker');
  });

  app.get<{ Params: AuthnParams }>('/api/v5/authentication/:authenticator', (request) => {
    requireBuiltInDatabase(request.params.authenticator);
    return AUTHENTICATOR_CONFIG;
  });

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

  /** 5.8.2+ behaviour: 200 with counts; `type` is required; an empty list is an error. */
  app.post<{ Params: AuthnParams; Querystring: Query }>('/api/v5/authentication/:authenticator/import_users', (request) => {
    requireBuiltInDatabase(request.params.authenticator);
    const type = queryValue(request.query, 'type');
    if (type === undefined) throw badRequest('Missing required parameter: type');
    if (type !== 'plain' && type !== 'hash') throw badRequest('type: must be plain or hash');
    if (!Array.isArray(request.body)) throw badRequest('the body must be a JSON array of users');
    if (request.body.length === 0) throw badRequest('empty_users');
    if (type === 'plain') return users.importPlain(parseBody(PlainImport, request.body));
    return users.importHashed(parseBody(HashImport, request.body));
  });
}
