import type { FastifyInstance } from 'fastify';
import { NODE_NAME, rfc3339 } from '../../emqx-formats';
import {
  HttpActionConfig,
  HttpActionCreate,
  HttpConnectorConfig,
  HttpConnectorCreate,
  parseResourceId,
} from '../../rule-engine/http-resources';
import { RuleInput, type RuleEngine, type StoredRule } from '../../rule-engine/rule-engine';
import { RuleSqlError } from '../../rule-engine/sql';
import type { ApiContext } from '../context';
import { ApiError, apiError, badRequest, notFound, parseBody } from '../errors';
import { booleanParam, pageRequest, paginate, queryValue, type Query } from '../pagination';
import { noContent } from '../replies';

/** Connectors, actions and rules: enough of the rule engine for an HTTP webhook (docs/emqx-setup.md). */

type IdParams = { Params: { id: string } };
const CONNECTED = { status: 'connected', status_reason: '', node_status: [{ node: NODE_NAME, status: 'connected' }] };

/** emqx_resource.erl `validate_name/2`: what a connector or action name may be. */
const RESOURCE_NAME = /^[0-9a-zA-Z][-0-9a-zA-Z_]*$/;

const INVALID_NAME_FORMAT =
  'Invalid name format. The name must begin with a letter or number (0-9, a-z, A-Z) and can only include underscores and hyphens as non-initial characters. Got: ';

/** Why emqx_resource.erl `validate_name/2` refuses a name, or `undefined` when it accepts it. */
function nameRefusal(name: string): string | undefined {
  if (name === '') return 'Name cannot be empty string';
  if (name.length >= 255) return 'Name length must be less than 255';
  return RESOURCE_NAME.test(name) ? undefined : INVALID_NAME_FORMAT + name;
}

/**
 * A create body whose `name` EMQX refuses: 400 with the validation error as a JSON text, as
 * `t_create_with_bad_name` (emqx_connector_api_SUITE.erl) and `t_bad_name` (emqx_bridge_v2_api_SUITE.erl) expect.
 */
function checkNewName(body: unknown): void {
  const name = body !== null && typeof body === 'object' ? (body as { name?: unknown }).name : undefined;
  const refusal = typeof name === 'string' ? nameRefusal(name) : undefined;
  if (refusal !== undefined) throw badRequest(JSON.stringify({ kind: 'validation_error', reason: refusal }));
}

/**
 * The name in a `{type}:{name}` id. An id EMQX cannot parse is 404 "Invalid connector ID, ..." /
 * "Invalid bridge ID, ..." (`?TRY_PARSE_ID` in emqx_connector_api.erl and emqx_bridge_v2_api.erl,
 * reasons from emqx_resource.erl `parse_resource_id/2`).
 */
function httpResourceName(id: string, kind: 'connector' | 'action'): string {
  const invalid = (reason: string) => notFound(`Invalid ${kind === 'connector' ? 'connector' : 'bridge'} ID, ${reason}`);
  const parts = id.split(':');
  if (parts.length !== 2) throw invalid(`should be of pattern {type}:{name}, but got: ${id}`);
  const [type = '', name = ''] = parts;
  const refusal = nameRefusal(name);
  if (refusal !== undefined) throw invalid(refusal);
  if (type !== 'http') throw notFound(kind === 'connector' ? 'Connector not found' : 'Action not found');
  return name;
}

function withoutIdentity(body: unknown): unknown {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return body;
  const { type: _type, name: _name, ...rest } = body as Record<string, unknown>;
  return rest;
}

export function registerRuleEngineRoutes(app: FastifyInstance, { ruleEngine }: ApiContext): void {
  registerConnectorRoutes(app, ruleEngine);
  registerActionRoutes(app, ruleEngine);
  registerRuleRoutes(app, ruleEngine);
}

function registerConnectorRoutes(app: FastifyInstance, ruleEngine: RuleEngine): void {
  const { resources } = ruleEngine;
  const view = (name: string): Record<string, unknown> => {
    const record = resources.getConnector(name);
    if (!record) throw notFound('Connector not found');
    return { type: 'http', name, ...record.config, ...CONNECTED, actions: resources.actionsUsingConnector(name) };
  };

  app.get('/api/v5/connectors', () => resources.listConnectors().map((c) => view(c.name)));

  app.post('/api/v5/connectors', (request, reply) => {
    checkNewName(request.body);
    const { type: _type, name, ...config } = parseBody(HttpConnectorCreate, request.body);
    if (resources.getConnector(name)) throw apiError(400, 'ALREADY_EXISTS', 'Connector already exists');
    resources.putConnector(name, config);
    reply.code(201);
    return view(name);
  });

  app.get<IdParams>('/api/v5/connectors/:id', (request) => view(httpResourceName(request.params.id, 'connector')));

  app.put<IdParams>('/api/v5/connectors/:id', (request) => {
    const name = httpResourceName(request.params.id, 'connector');
    const config = parseBody(HttpConnectorConfig, withoutIdentity(request.body));
    if (!resources.getConnector(name)) throw notFound('Connector not found');
    resources.putConnector(name, config);
    return view(name);
  });

  app.delete<IdParams>('/api/v5/connectors/:id', (request, reply) => {
    const name = httpResourceName(request.params.id, 'connector');
    if (!resources.getConnector(name)) throw notFound('Connector not found');
    if (resources.actionsUsingConnector(name).length > 0) {
      throw badRequest('Cannot delete connector while there are active channels defined for this connector');
    }
    resources.deleteConnector(name);
    noContent(reply);
  });
}

function registerActionRoutes(app: FastifyInstance, ruleEngine: RuleEngine): void {
  const { resources } = ruleEngine;
  const view = (name: string): Record<string, unknown> => {
    const record = resources.getAction(name);
    if (!record) throw notFound('Action not found');
    return {
      type: 'http',
      name,
      ...record.config,
      ...CONNECTED,
      created_at: record.createdAt,
      last_modified_at: record.lastModifiedAt,
    };
  };
  const requireConnector = (connector: string): void => {
    if (!resources.getConnector(connector)) throw badRequest(`connector http:${connector} not found`);
  };

  app.get('/api/v5/actions', () => resources.listActions().map((a) => view(a.name)));

  app.post('/api/v5/actions', (request, reply) => {
    checkNewName(request.body);
    const { type: _type, name, ...config } = parseBody(HttpActionCreate, request.body);
    if (resources.getAction(name)) throw apiError(400, 'ALREADY_EXISTS', 'Action already exists');
    requireConnector(config.connector);
    resources.putAction(name, config);
    reply.code(201);
    return view(name);
  });

  app.get<IdParams>('/api/v5/actions/:id', (request) => view(httpResourceName(request.params.id, 'action')));

  app.put<IdParams>('/api/v5/actions/:id', (request) => {
    const name = httpResourceName(request.params.id, 'action');
    const config = parseBody(HttpActionConfig, withoutIdentity(request.body));
    if (!resources.getAction(name)) throw notFound('Action not found');
    requireConnector(config.connector);
    resources.putAction(name, config);
    return view(name);
  });

  app.delete<IdParams & { Querystring: Query }>('/api/v5/actions/:id', (request, reply) => {
    const name = httpResourceName(request.params.id, 'action');
    if (!resources.getAction(name)) throw notFound('Action not found');
    const actionId = `http:${name}`;
    const dependents = ruleEngine.rulesUsingAction(actionId);
    // emqx_bridge_v2_api.erl handle_delete/3: the dependent rule ids travel in `rules`.
    if (dependents.length > 0 && booleanParam(request.query, 'also_delete_dep_actions') !== true) {
      throw new ApiError(400, { code: 'BAD_REQUEST', message: 'Cannot delete action while active rules are depending on it', rules: dependents });
    }
    ruleEngine.removeActionFromRules(actionId);
    resources.deleteAction(name);
    ruleEngine.forgetAction(name);
    noContent(reply);
  });

  app.get<IdParams>('/api/v5/actions/:id/metrics', (request) => {
    const name = httpResourceName(request.params.id, 'action');
    if (!resources.getAction(name)) throw notFound('Action not found');
    const metrics = ruleEngine.actionMetrics(name);
    return { metrics, node_metrics: [{ node: NODE_NAME, metrics }] };
  });

  app.put<IdParams>('/api/v5/actions/:id/metrics/reset', (request, reply) => {
    const name = httpResourceName(request.params.id, 'action');
    if (!resources.getAction(name)) throw notFound('Action not found');
    ruleEngine.resetActionMetrics(name);
    noContent(reply);
  });
}

function ruleView(rule: StoredRule): Record<string, unknown> {
  return {
    id: rule.id,
    name: rule.name,
    sql: rule.sql,
    actions: rule.actions,
    enable: rule.enable,
    description: rule.description,
    metadata: rule.metadata,
    from: rule.from,
    created_at: rfc3339(rule.createdAt),
    last_modified_at: rfc3339(rule.lastModifiedAt),
  };
}

function checkActionRefs(actions: RuleInput['actions']): void {
  for (const action of actions) {
    if (typeof action === 'string' && !parseResourceId(action)) throw badRequest(`actions: invalid action id ${action}`);
  }
}

function storeRule(ruleEngine: RuleEngine, id: string, input: RuleInput): StoredRule {
  checkActionRefs(input.actions);
  try {
    return ruleEngine.putRule(id, input);
  } catch (err) {
    if (err instanceof RuleSqlError) throw badRequest(`sql: ${err.message}`);
    throw err;
  }
}

/**
 * The fields a rule body may carry: the rule config's (emqx_rule_engine_schema.erl `fields("rules")`)
 * and those emqx_rule_engine_api.erl `filter_out_request_body/1` drops. The config check refuses any
 * other field with a 400.
 */
const RULE_BODY_FIELDS: ReadonlySet<string> = new Set([
  'name',
  'sql',
  'actions',
  'enable',
  'description',
  'metadata',
  'id',
  'status',
  'node_status',
  'node_metrics',
  'metrics',
  'node',
]);

function ruleBody(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw badRequest('the body must be a JSON object');
  const unknown = Object.keys(body).filter((key) => !RULE_BODY_FIELDS.has(key));
  if (unknown.length > 0) throw badRequest(`unknown_fields: ${unknown.join(', ')}`);
  return body as Record<string, unknown>;
}

function registerRuleRoutes(app: FastifyInstance, ruleEngine: RuleEngine): void {
  app.get<{ Querystring: Query }>('/api/v5/rules', (request) => {
    const page = pageRequest(request.query);
    const likeId = queryValue(request.query, 'like_id');
    const enable = booleanParam(request.query, 'enable');
    const rules = ruleEngine
      .listRules()
      .filter((r) => (likeId === undefined || r.id.includes(likeId)) && (enable === undefined || r.enable === enable));
    const result = paginate(rules, page, { withCount: likeId === undefined });
    return { ...result, data: result.data.map(ruleView) };
  });

  app.post('/api/v5/rules', (request, reply) => {
    const input = parseBody(RuleInput, ruleBody(request.body));
    const id = input.id ?? ruleEngine.newRuleId();
    if (ruleEngine.getRule(id)) throw badRequest('rule id already exists');
    reply.code(201);
    return ruleView(storeRule(ruleEngine, id, input));
  });

  app.get<IdParams>('/api/v5/rules/:id', (request) => {
    const rule = ruleEngine.getRule(request.params.id);
    if (!rule) throw notFound('Rule Id Not Found');
    return ruleView(rule);
  });

  /**
   * Fields left out keep their current values (the update is merged into the stored config,
   * emqx_config_handler.erl `merge_to_old_config/2`); an unknown id is created, with 200
   * (emqx_rule_engine.erl `post_config_update/5` with no old rule).
   */
  app.put<IdParams>('/api/v5/rules/:id', (request) => {
    const body = ruleBody(request.body);
    const current = ruleEngine.getRule(request.params.id);
    const kept = current
      ? { sql: current.sql, actions: current.actions, enable: current.enable, description: current.description, metadata: current.metadata, name: current.name }
      : {};
    const input = parseBody(RuleInput, { ...kept, ...body, id: undefined });
    return ruleView(storeRule(ruleEngine, request.params.id, input));
  });

  app.delete<IdParams>('/api/v5/rules/:id', (request, reply) => {
    if (!ruleEngine.deleteRule(request.params.id)) throw notFound('Rule Id Not Found');
    noContent(reply);
  });
}
