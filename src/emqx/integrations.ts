/**
 * Data integration: connectors, actions and rules (docs/emqx-setup.md), the pieces that make EMQX POST its
 * events to the webhook adapter. Creating one that exists answers 400 "already exists" (or 409),
 * surfaced as `EmqxConflictError`; the upserts then PUT the new configuration.
 */
import { z } from 'zod';
import { EmqxConflictError, falseIfNotFound, nullIfNotFound } from './errors';
import { apiPath, type CallOptions, type EmqxHttp } from './http';
import { ActionInput, ConnectorInput, NonEmpty, PageQuery, RuleInput } from './inputs';
import { fetchPage, paginate, type PaginateOptions } from './pagination';
import { parseInput, parseMaybeWrapped } from './parse';
import { Action, Connector, Rule, type Page } from './schemas';

export type UpsertResult = 'created' | 'updated';

/**
 * Header values may hold shared secrets (`authorization: Bearer <token>`): keep them, and the token
 * alone, out of error messages. Short values (`post`, `gzip`) are not worth masking.
 */
function headerSecrets(body: Record<string, unknown>): string[] {
  const sources = [body.headers, (body.parameters as Record<string, unknown> | undefined)?.headers];
  const values = sources.flatMap((headers) => (headers && typeof headers === 'object' ? Object.values(headers as Record<string, unknown>) : []));
  return values
    .filter((v): v is string => typeof v === 'string')
    .flatMap((v) => [v, ...v.split(/\s+/)])
    .filter((v) => v.length >= 8);
}

async function upsert(create: () => Promise<unknown>, update: () => Promise<unknown>): Promise<UpsertResult> {
  try {
    await create();
    return 'created';
  } catch (err) {
    if (!(err instanceof EmqxConflictError)) throw err;
  }
  await update();
  return 'updated';
}

// ---- connectors and actions: both are addressed as `{type}:{name}` ----

type Kind = 'connectors' | 'actions';

const resourcePath = (kind: Kind, type: string, name: string) =>
  `/${kind}${apiPath`/${`${parseInput(NonEmpty, type, 'type')}:${parseInput(NonEmpty, name, 'name')}`}`}`;

async function listResources<S extends z.ZodType>(http: EmqxHttp, kind: Kind, schema: S, opts: CallOptions): Promise<z.output<S>[]> {
  const path = `/${kind}`;
  const res = await http.request({ method: 'GET', path, signal: opts.signal });
  return parseMaybeWrapped(z.array(schema), res, { method: 'GET', path });
}

async function getResource<S extends z.ZodType>(http: EmqxHttp, kind: Kind, schema: S, type: string, name: string, opts: CallOptions) {
  const path = resourcePath(kind, type, name);
  return nullIfNotFound(
    http.request({ method: 'GET', path, signal: opts.signal }).then((res) => parseMaybeWrapped(schema, res, { method: 'GET', path })),
  );
}

async function createResource(http: EmqxHttp, kind: Kind, body: Record<string, unknown>, opts: CallOptions): Promise<void> {
  await http.request({ method: 'POST', path: `/${kind}`, body, signal: opts.signal, secrets: headerSecrets(body) });
}

/** PUT takes the configuration without `type` and `name`, which are in the path. */
async function updateResource(http: EmqxHttp, kind: Kind, body: { type: string; name: string }, opts: CallOptions): Promise<void> {
  const { type, name, ...config } = body;
  await http.request({ method: 'PUT', path: resourcePath(kind, type, name), body: config, signal: opts.signal, secrets: headerSecrets(config) });
}

async function deleteResource(http: EmqxHttp, kind: Kind, type: string, name: string, opts: CallOptions): Promise<boolean> {
  return falseIfNotFound(http.request({ method: 'DELETE', path: resourcePath(kind, type, name), signal: opts.signal }));
}

export const listConnectors = (http: EmqxHttp, opts: CallOptions = {}): Promise<Connector[]> => listResources(http, 'connectors', Connector, opts);

export const getConnector = (http: EmqxHttp, type: string, name: string, opts: CallOptions = {}): Promise<Connector | null> =>
  getResource(http, 'connectors', Connector, type, name, opts);

export const deleteConnector = (http: EmqxHttp, type: string, name: string, opts: CallOptions = {}): Promise<boolean> =>
  deleteResource(http, 'connectors', type, name, opts);

export const upsertConnector = (http: EmqxHttp, connector: ConnectorInput, opts: CallOptions = {}): Promise<UpsertResult> => {
  const body = parseInput(ConnectorInput, connector, 'connector');
  return upsert(() => createResource(http, 'connectors', body, opts), () => updateResource(http, 'connectors', body, opts));
};

export const listActions = (http: EmqxHttp, opts: CallOptions = {}): Promise<Action[]> => listResources(http, 'actions', Action, opts);

export const getAction = (http: EmqxHttp, type: string, name: string, opts: CallOptions = {}): Promise<Action | null> =>
  getResource(http, 'actions', Action, type, name, opts);

export const deleteAction = (http: EmqxHttp, type: string, name: string, opts: CallOptions = {}): Promise<boolean> =>
  deleteResource(http, 'actions', type, name, opts);

export const upsertAction = (http: EmqxHttp, action: ActionInput, opts: CallOptions = {}): Promise<UpsertResult> => {
  const body = parseInput(ActionInput, action, 'action');
  return upsert(() => createResource(http, 'actions', body, opts), () => updateResource(http, 'actions', body, opts));
};

// ---- rules ----

const rulePath = (id: string) => apiPath`/rules/${parseInput(NonEmpty, id, 'id')}`;

export async function listRules(http: EmqxHttp, query: PageQuery = {}, opts: CallOptions = {}): Promise<Page<Rule>> {
  return fetchPage(http, '/rules', parseInput(PageQuery, query, 'query'), Rule, opts);
}

export function iterateRules(http: EmqxHttp, opts: PaginateOptions = {}): AsyncGenerator<Rule, void, undefined> {
  return paginate(http, '/rules', {}, Rule, opts);
}

export async function getRule(http: EmqxHttp, id: string, opts: CallOptions = {}): Promise<Rule | null> {
  const path = rulePath(id);
  return nullIfNotFound(
    http.request({ method: 'GET', path, signal: opts.signal }).then((res) => parseMaybeWrapped(Rule, res, { method: 'GET', path })),
  );
}

async function createRule(http: EmqxHttp, rule: RuleInput, opts: CallOptions = {}): Promise<void> {
  const body = parseInput(RuleInput, rule, 'rule');
  await http.request({ method: 'POST', path: '/rules', body, signal: opts.signal });
}

/** PUT takes the rule without `id`, which is in the path. */
async function updateRule(http: EmqxHttp, rule: RuleInput, opts: CallOptions = {}): Promise<void> {
  const { id, ...body } = parseInput(RuleInput, rule, 'rule');
  await http.request({ method: 'PUT', path: rulePath(id), body, signal: opts.signal });
}

export async function deleteRule(http: EmqxHttp, id: string, opts: CallOptions = {}): Promise<boolean> {
  return falseIfNotFound(http.request({ method: 'DELETE', path: rulePath(id), signal: opts.signal }));
}

export async function upsertRule(http: EmqxHttp, rule: RuleInput, opts: CallOptions = {}): Promise<UpsertResult> {
  const body = parseInput(RuleInput, rule, 'rule');
  return upsert(
    () => createRule(http, body, opts),
    () => updateRule(http, body, opts),
  );
}
