import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AclRuleInput, MAX_RULES, normalizeRule, type AclRule } from '../../acl';
import type { ApiContext } from '../context';
import { apiError, badRequest, clientNotFound, notFound, parseBody } from '../errors';
import { pageRequest, paginate, queryValue, type Query } from '../pagination';
import { noContent } from '../replies';
import { sourceMissing } from './authz-config';

/**
 * Built-in database authorization rules, 5.1+ paths, and the authz cache endpoints. Nothing is
 * cached here (every check reads the rules), but the endpoints exist and answer like EMQX. Every
 * rules endpoint first checks that the built_in_database source is configured and answers 404
 * "Not found: built_in_database" when it is not
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth_mnesia/src/emqx_authz_api_mnesia.erl
 * `is_configured_authz_source/2`).
 */

const BASE = '/api/v5/authorization/sources/built_in_database/rules';
const Rules = z.array(AclRuleInput);
// check_schema => true (emqx_authz_api_mnesia.erl api_spec/0): a field the schema does not know is a 400.
const ClientRulesBody = z.strictObject({ clientid: z.string().min(1), rules: Rules });
const UserRulesBody = z.strictObject({ username: z.string().min(1), rules: Rules });
const AllRulesBody = z.strictObject({ rules: Rules });

export function registerAuthzRuleRoutes(app: FastifyInstance, { acl, sessions, authorization }: ApiContext): void {
  const maxRules = (): number => {
    const source = authorization.source('built_in_database');
    return source?.type === 'built_in_database' ? source.max_rules : MAX_RULES;
  };
  const checkedRules = (rules: z.infer<typeof Rules>, owner: string): AclRule[] => {
    if (rules.length > maxRules()) throw badRequest(`The rules length of ${owner} exceeds the maximum limit.`);
    return rules.map(normalizeRule);
  };

  app.addHook('onRequest', (request, _reply, done) => {
    const missing = request.url.startsWith(BASE) && !authorization.source('built_in_database');
    done(missing ? sourceMissing('built_in_database') : undefined);
  });

  app.get<{ Querystring: Query }>(`${BASE}/clients`, (request) => {
    const page = pageRequest(request.query);
    const like = queryValue(request.query, 'like_clientid');
    const entries = acl.clientRules().filter((e) => like === undefined || e.clientid.includes(like));
    return paginate(entries, page, { withCount: like === undefined });
  });

  app.post(`${BASE}/clients`, (request, reply) => {
    const entries = parseBody(z.array(ClientRulesBody), request.body);
    const prepared = entries.map((e) => ({ clientid: e.clientid, rules: checkedRules(e.rules, `Client '${e.clientid}'`) }));
    const existing = prepared.filter((e) => acl.getClientRules(e.clientid) !== undefined).map((e) => e.clientid);
    if (existing.length > 0) throw apiError(409, 'ALREADY_EXISTS', `Client '${existing.join(',')}' already exist`);
    for (const e of prepared) acl.setClientRules(e.clientid, e.rules);
    noContent(reply);
  });

  app.get<{ Params: { clientid: string } }>(`${BASE}/clients/:clientid`, (request) => {
    const rules = acl.getClientRules(request.params.clientid);
    if (!rules) throw notFound('Not Found');
    return { clientid: request.params.clientid, rules };
  });

  app.put<{ Params: { clientid: string } }>(`${BASE}/clients/:clientid`, (request, reply) => {
    const body = parseBody(ClientRulesBody, request.body);
    if (body.clientid !== request.params.clientid) throw badRequest('clientid in the body must match the path');
    acl.setClientRules(body.clientid, checkedRules(body.rules, `Client '${body.clientid}'`));
    noContent(reply);
  });

  app.delete<{ Params: { clientid: string } }>(`${BASE}/clients/:clientid`, (request, reply) => {
    if (!acl.deleteClientRules(request.params.clientid)) throw notFound('ClientID Not Found');
    noContent(reply);
  });

  app.get<{ Querystring: Query }>(`${BASE}/users`, (request) => {
    const page = pageRequest(request.query);
    const like = queryValue(request.query, 'like_username');
    const entries = acl.userRules().filter((e) => like === undefined || e.username.includes(like));
    return paginate(entries, page, { withCount: like === undefined });
  });

  app.post(`${BASE}/users`, (request, reply) => {
    const entries = parseBody(z.array(UserRulesBody), request.body);
    const prepared = entries.map((e) => ({ username: e.username, rules: checkedRules(e.rules, `User '${e.username}'`) }));
    const existing = prepared.filter((e) => acl.getUserRules(e.username) !== undefined).map((e) => e.username);
    if (existing.length > 0) throw apiError(409, 'ALREADY_EXISTS', `User '${existing.join(',')}' already exist`);
    for (const e of prepared) acl.setUserRules(e.username, e.rules);
    noContent(reply);
  });

  app.get<{ Params: { username: string } }>(`${BASE}/users/:username`, (request) => {
    const rules = acl.getUserRules(request.params.username);
    if (!rules) throw notFound('Not Found');
    return { username: request.params.username, rules };
  });

  app.put<{ Params: { username: string } }>(`${BASE}/users/:username`, (request, reply) => {
    const body = parseBody(UserRulesBody, request.body);
    if (body.username !== request.params.username) throw badRequest('username in the body must match the path');
    acl.setUserRules(body.username, checkedRules(body.rules, `User '${body.username}'`));
    noContent(reply);
  });

  app.delete<{ Params: { username: string } }>(`${BASE}/users/:username`, (request, reply) => {
    if (!acl.deleteUserRules(request.params.username)) throw notFound('Username Not Found');
    noContent(reply);
  });

  app.get(`${BASE}/all`, () => ({ rules: acl.getAllRules() }));

  app.post(`${BASE}/all`, (request, reply) => {
    const body = parseBody(AllRulesBody, request.body);
    acl.setAllRules(checkedRules(body.rules, 'All'));
    noContent(reply);
  });

  app.delete(`${BASE}/all`, (_request, reply) => {
    acl.setAllRules([]);
    noContent(reply);
  });

  /** Purging needs the source disabled first. */
  app.delete(BASE, (_request, reply) => {
    if (authorization.source('built_in_database')?.enable) throw badRequest("'built_in_database' type source must be disabled before purge.");
    acl.clear();
    noContent(reply);
  });

  app.delete('/api/v5/authorization/cache', (_request, reply) => reply.code(204).send());

  app.get<{ Params: { clientid: string } }>('/api/v5/clients/:clientid/authorization/cache', (request) => {
    if (!sessions.get(request.params.clientid)) throw clientNotFound();
    return [];
  });

  app.delete<{ Params: { clientid: string } }>('/api/v5/clients/:clientid/authorization/cache', (request, reply) => {
    if (!sessions.get(request.params.clientid)) throw clientNotFound();
    noContent(reply);
  });
}
