import { apiError, badRequest } from './errors';

/**
 * EMQX page-number pagination
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api.erl): `page` from 1,
 * `limit` 1..10000 (default 100); `meta.count` only when no fuzzy (`like_*`) filter was used; `hasnext`
 * always.
 */

export type Query = Record<string, string | string[] | undefined>;

export interface PageRequest {
  page: number;
  limit: number;
}

export interface Page<T> {
  data: T[];
  meta: { page: number; limit: number; count?: number; hasnext: boolean };
}

const MAX_LIMIT = 10_000;
const DEFAULT_LIMIT = 100;

export function pageRequest(query: Query): PageRequest {
  const page = integerParam(query, 'page') ?? 1;
  const limit = integerParam(query, 'limit') ?? DEFAULT_LIMIT;
  if (page < 1 || limit < 1 || limit > MAX_LIMIT) throw apiError(400, 'INVALID_PARAMETER', 'page_limit_invalid');
  return { page, limit };
}

export function paginate<T>(items: T[], request: PageRequest, options: { withCount: boolean }): Page<T> {
  const start = (request.page - 1) * request.limit;
  const data = items.slice(start, start + request.limit);
  const meta: Page<T>['meta'] = { page: request.page, limit: request.limit, hasnext: start + request.limit < items.length };
  if (options.withCount) meta.count = items.length;
  return { data, meta };
}

/** All values of a repeatable query parameter (`clientid=a&clientid=b`). */
export function queryValues(query: Query, name: string): string[] {
  const value = query[name];
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

export function queryValue(query: Query, name: string): string | undefined {
  return queryValues(query, name)[0];
}

export function integerParam(query: Query, name: string): number | undefined {
  const raw = queryValue(query, name);
  if (raw === undefined || raw === '') return undefined;
  if (!/^-?\d+$/.test(raw)) throw badRequest(`${name}: must be an integer`);
  return Number(raw);
}

export function booleanParam(query: Query, name: string): boolean | undefined {
  const raw = queryValue(query, name);
  if (raw === undefined || raw === '') return undefined;
  if (raw !== 'true' && raw !== 'false') throw badRequest(`${name}: must be true or false`);
  return raw === 'true';
}
