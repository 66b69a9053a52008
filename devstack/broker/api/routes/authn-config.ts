import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AUTHENTICATOR_ID, AuthenticatorConfig } from '../../auth-config';
import type { ApiContext } from '../context';
import { apiError, badRequest, notFound, parseBody } from '../errors';
import { noContent } from '../replies';

/**
 * The global authentication chain: `GET/POST /authentication`, `GET/PUT/DELETE
 * /authentication/{id}` (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authn/emqx_authn_api.erl,
 * `authenticators/2`, `authenticator/2`, `serialize_error/1`). Only the built-in database
 * authenticator exists here; the id may arrive URL-encoded or plain.
 */

const MechanismBackend = z.looseObject({ mechanism: z.string(), backend: z.string() });

export function authenticatorMissing(id: string): ReturnType<typeof notFound> {
  return notFound(`Authenticator '${id}' does not exist`);
}

export function registerAuthnConfigRoutes(app: FastifyInstance, { authentication }: ApiContext): void {
  app.get('/api/v5/authentication', () => {
    const view = authentication.view();
    return view ? [view] : [];
  });

  app.post('/api/v5/authentication', (request) => {
    const kind = parseBody(MechanismBackend, request.body);
    if (`${kind.mechanism}:${kind.backend}` !== AUTHENTICATOR_ID) throw badRequest('Unsupported authentication type');
    if (authentication.authenticator) throw apiError(409, 'ALREADY_EXISTS', `Authenticator '${AUTHENTICATOR_ID}' already exist`);
    authentication.set(parseBody(AuthenticatorConfig, request.body));
    return authentication.view();
  });

  app.get<{ Params: { id: string } }>('/api/v5/authentication/:id', (request) => {
    const view = request.params.id === AUTHENTICATOR_ID ? authentication.view() : undefined;
    if (!view) throw authenticatorMissing(request.params.id);
    return view;
  });

  app.put<{ Params: { id: string } }>('/api/v5/authentication/:id', (request, reply) => {
    if (request.params.id !== AUTHENTICATOR_ID || !authentication.authenticator) throw authenticatorMissing(request.params.id);
    const kind = parseBody(MechanismBackend, request.body);
    if (`${kind.mechanism}:${kind.backend}` !== AUTHENTICATOR_ID) throw badRequest('Change of authentication type is not allowed');
    authentication.set(parseBody(AuthenticatorConfig, request.body));
    noContent(reply);
  });

  app.delete<{ Params: { id: string } }>('/api/v5/authentication/:id', (request, reply) => {
    if (request.params.id !== AUTHENTICATOR_ID || !authentication.authenticator) throw authenticatorMissing(request.params.id);
    authentication.remove();
    noContent(reply);
  });
}
