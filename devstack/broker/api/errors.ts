import type { z } from 'zod';

/**
 * EMQX 5 error responses: `{"code": "<UPPER_SNAKE>", "message": "..."}`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_dashboard/src/emqx_dashboard_swagger.erl). `/publish`
 * answers with its own bodies, so the body is kept as given.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown> & { message: string },
  ) {
    super(body.message);
  }
}

export function apiError(status: number, code: string, message: string): ApiError {
  return new ApiError(status, { code, message });
}

export const badRequest = (message: string): ApiError => apiError(400, 'BAD_REQUEST', message);
export const notFound = (message: string): ApiError => apiError(404, 'NOT_FOUND', message);
export const clientNotFound = (): ApiError => apiError(404, 'CLIENTID_NOT_FOUND', 'Client ID not found');

/** The first problem of a failed parse, naming the field: "Missing required parameter: x" or "x: reason". */
export function describeZodError(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid request body';
  const field = issue.path.map(String).join('.');
  if (issue.code === 'invalid_type' && issue.input === undefined && field) return `Missing required parameter: ${field}`;
  return field ? `${field}: ${issue.message}` : issue.message;
}

/** Parses a request body with a schema; a failure is 400 BAD_REQUEST naming the field. */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw badRequest(describeZodError(parsed.error));
  return parsed.data;
}
