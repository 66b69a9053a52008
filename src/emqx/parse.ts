/**
 * Validation at the two boundaries of the client: what EMQX answers (zod schemas from schemas.ts)
 * and what callers pass in (input schemas in inputs.ts).
 */
import type { z } from 'zod';
import { EmqxInputError, EmqxResponseError, type HttpMethod } from './errors';
import type { EmqxResponse } from './http';

export interface Endpoint {
  method: HttpMethod;
  path: string;
}

function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => `${issue.path.length > 0 ? issue.path.map(String).join('.') : '(body)'}: ${issue.message}`)
    .join('; ');
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Parses an EMQX answer with `schema`; a mismatch becomes an `EmqxResponseError` naming the field. */
export function parseResponse<S extends z.ZodType>(schema: S, res: EmqxResponse, at: Endpoint): z.output<S> {
  const parsed = schema.safeParse(res.body);
  if (parsed.success) return parsed.data;
  throw new EmqxResponseError(
    `EMQX ${at.method} ${at.path} answered ${res.status} with an unexpected body: ${describeIssues(parsed.error)}`,
    { status: res.status, code: 'INVALID_RESPONSE', method: at.method, path: at.path },
  );
}

/**
 * Accepts both `{"data": X}` and a bare `X`: the code returns several bodies bare that EMQX Cloud's
 * docs show wrapped (e.g. https://docs.emqx.com/en/cloud/latest/api/clients_v5.html), so either is taken.
 */
export function parseMaybeWrapped<S extends z.ZodType>(schema: S, res: EmqxResponse, at: Endpoint): z.output<S> {
  if (isRecord(res.body) && 'data' in res.body) {
    const inner = schema.safeParse(res.body.data);
    if (inner.success) return inner.data;
  }
  return parseResponse(schema, res, at);
}

/** Validates caller input; a mismatch becomes an `EmqxInputError` whose message names the field. */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, field: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues
    .slice(0, 3)
    .map((issue) => `${[field, ...issue.path.map(String)].join('.')}: ${issue.message}`)
    .join('; ');
  throw new EmqxInputError(issues, { status: 0, code: 'INVALID_INPUT' });
}
