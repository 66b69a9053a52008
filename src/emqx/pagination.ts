/**
 * Page-number pagination
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api.erl): follow
 * `meta.hasnext`, never `meta.count`, which is absent with `like_*` filters.
 */
import { z } from 'zod';
import type { CallOptions, EmqxHttp, Query } from './http';
import { parseInput, parseResponse } from './parse';
import { pageOf, type Page } from './schemas';

export const DEFAULT_PAGE_SIZE = 1000;

export interface PaginateOptions extends CallOptions {
  /** Items per request, 1..10000. Default 1000. */
  pageSize?: number;
}

const PageSize = z.int().min(1).max(10_000);

/** Fetches one page. */
export async function fetchPage<S extends z.ZodType>(
  http: EmqxHttp,
  path: string,
  query: Query,
  item: S,
  opts: CallOptions = {},
): Promise<Page<z.output<S>>> {
  const res = await http.request({ method: 'GET', path, query, signal: opts.signal });
  return parseResponse(pageOf(item), res, { method: 'GET', path });
}

/** Yields every item of a paginated list, page after page, until `meta.hasnext` is false. */
export async function* paginate<S extends z.ZodType>(
  http: EmqxHttp,
  path: string,
  query: Query,
  item: S,
  opts: PaginateOptions = {},
): AsyncGenerator<z.output<S>, void, undefined> {
  const limit = parseInput(PageSize, opts.pageSize ?? DEFAULT_PAGE_SIZE, 'pageSize');
  for (let page = 1; ; page += 1) {
    const { data, meta } = await fetchPage(http, path, { ...query, page, limit }, item, opts);
    yield* data;
    // An empty page that still claims `hasnext` would loop forever; stop instead.
    if (!meta.hasnext || data.length === 0) return;
  }
}

export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
