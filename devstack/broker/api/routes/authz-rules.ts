import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { AclRuleInput, MAX_RULES, normalizeRule, type AclRule, type RuleOwner } from '../../acl';
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
const AllRulesBody = z.strictObject({ rules: Rules });

/**
 * The per-client and per-username routes (`/clients[/:clientid]`, `/users[/:username]`), the same
 * but for the owner's key and EMQX's wording of its messages.
 */
interface OwnerRoutes {
  owner: RuleOwner;
  path: 'clients' | 'users';
  /** How EMQX's messages name one owner: `Client 'x'`, `User 'x'`. */
  label: 'Client' | 'User';
  /** EMQX's 404 message for deleting rules that do not exist. */
  deleteMissing: string;
  body: z.ZodType<{ name: string; rules: z.infer<typeof Rules> }>;
}

const OWNER_ROUTES: readonly OwnerRoutes[] = [
  {
    owner: 'clientid',
    path: 'clients',
    label: 'Client',
    deleteMissing: 'ClientID Not Found',
    body: z.strictObject({ clientid: z.string().min(1), rules: Rules }).transform((b) => ({ name: b.clientid, rules: b.rules })),
  },
  {
    owner: 'username',
    path: 'users',
    label: 'User',
    deleteMissing: 'Username Not Found',
    body: z.strictObject({ username: z.string().min(1), rules: Rules }).transform((b) => ({ name: b.username, rules: b.rules })),
  },
];

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

  for (const { owner, path, label, deleteMissing, body } of OWNER_ROUTES) {
    const rules = acl.of(owner);
    type NameParams = { Params: Record<RuleOwner, string> };
    const entry = (name: string, stored: AclRule[]) => ({ [owner]: name, rules: stored });

    app.get<{ Querystring: Query }>(`${BASE}/${path}`, (request) => {
      const page = pageRequest(request.query);
      const like = queryValue(request.query, `like_${owner}`);
      const entries = rules.list().filter(([name]) => like === undefined || name.includes(like));
      return paginate(entries.map(([name, stored]) => entry(name, stored)), page, { withCount: like === undefined });
    });

    app.post(`${BASE}/${path}`, (request, reply) => {
      const entries = parseBody(z.array(body), request.body);
      const prepared = entries.map((e) => ({ name: e.name, rules: checkedRules(e.rules, `${label} '${e.name}'`) }));
      const existing = prepared.filter((e) => rules.get(e.name) !== undefined).map((e) => e.name);
      if (existing.length > 0) throw apiError(409, 'ALREADY_EXISTS', `${label} '${existing.join(',')}' already exist`);
      for (const e of prepared) rules.set(e.name, e.rules);
      noContent(reply);
    });

    app.get<NameParams>(`${BASE}/${path}/:${owner}`, (request) => {
      const name = request.params[owner];
      const stored = rules.get(name);
      if (!stored) throw notFound('Not Found');
      return entry(name, stored);
    });

    app.put<NameParams>(`${BASE}/${path}/:${owner}`, (request, reply) => {
      const parsed = parseBody(body, request.body);
      if (parsed.name !== request.params[owner]) throw badRequest(`${owner} in the body must match the path`);
      rules.set(parsed.name, checkedRules(parsed.rules, `${label} '${parsed.name}'`));
      noContent(reply);
    });

    app.delete<NameParams>(`${BASE}/${path}/:${owner}`, (request, reply) => {
      if (!rules.delete(request.params[owner])) throw notFound(deleteMissing);
      noContent(reply);
    });
  }

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
