import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AuthzSettings, AuthzSource, STOCK_ACL_CONF } from '../../auth-config';
import type { ApiContext } from '../context';
import { badRequest, notFound, parseBody } from '../errors';
import { noContent } from '../replies';

/**
 * Authorization settings and sources: `GET/PUT /authorization/settings`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authz/emqx_authz_api_settings.erl),
 * `GET/POST /authorization/sources`, `GET/PUT/DELETE /authorization/sources/{type}` and
 * `POST .../{type}/move` (apps/emqx_auth/src/emqx_authz/emqx_authz_api_sources.erl). A new source
 * is prepended (`?CMD_PREPEND`), so it is checked first.
 */

const Position = z.strictObject({ position: z.string().regex(/^(front|rear|before:.+|after:.+)$/, 'must be front, rear, before:<type> or after:<type>') });

/** `with_source/2`'s answer for a type that is not configured. */
export function sourceMissing(type: string): ReturnType<typeof notFound> {
  return notFound(`Not found: ${type}`);
}

export function registerAuthzConfigRoutes(app: FastifyInstance, { authorization }: ApiContext): void {
  const view = (source: AuthzSource): AuthzSource => (source.type === 'file' ? { ...source, rules: STOCK_ACL_CONF } : source);

  app.get('/api/v5/authorization/settings', () => authorization.settings);

  app.put('/api/v5/authorization/settings', (request) => {
    authorization.settings = parseBody(AuthzSettings, request.body);
    return authorization.settings;
  });

  app.get('/api/v5/authorization/sources', () => ({ sources: authorization.sources.map(view) }));

  app.post('/api/v5/authorization/sources', (request, reply) => {
    const source = parseBody(AuthzSource, request.body);
    if (authorization.source(source.type)) throw badRequest(`{type_duplicated,${source.type}}`);
    authorization.sources = [source, ...authorization.sources];
    noContent(reply);
  });

  app.get<{ Params: { type: string } }>('/api/v5/authorization/sources/:type', (request) => {
    const source = authorization.source(request.params.type);
    if (!source) throw sourceMissing(request.params.type);
    return view(source);
  });

  app.put<{ Params: { type: string } }>('/api/v5/authorization/sources/:type', (request, reply) => {
    const { type } = request.params;
    if (!authorization.source(type)) throw sourceMissing(type);
    const body = parseBody(z.looseObject({ type: z.string() }), request.body);
    if (body.type !== type) throw badRequest('Type mismatch');
    const source = parseBody(AuthzSource, request.body);
    authorization.sources = authorization.sources.map((s) => (s.type === type ? source : s));
    noContent(reply);
  });

  app.delete<{ Params: { type: string } }>('/api/v5/authorization/sources/:type', (request, reply) => {
    if (!authorization.source(request.params.type)) throw sourceMissing(request.params.type);
    authorization.remove(request.params.type);
    noContent(reply);
  });

  app.post<{ Params: { type: string } }>('/api/v5/authorization/sources/:type/move', (request, reply) => {
    const { type } = request.params;
    const moving = authorization.source(type);
    if (!moving) throw notFound(`source ${type} not found`);
    const { position } = parseBody(Position, request.body);
    const rest = authorization.sources.filter((s) => s !== moving);
    const [where, anchor] = position.split(':', 2) as [string, string | undefined];
    let index = where === 'front' ? 0 : rest.length;
    if (anchor !== undefined) {
      const at = rest.findIndex((s) => s.type === anchor);
      if (at < 0) throw notFound(`source ${anchor} not found`);
      index = where === 'before' ? at : at + 1;
    }
    authorization.sources = [...rest.slice(0, index), moving, ...rest.slice(index)];
    noContent(reply);
  });
}
