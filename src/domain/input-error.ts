import type { z } from 'zod';

/** Bad input from outside (CLI, client library, files): names every bad field and why. */
export class InputError extends Error {
  readonly type = 'InputError';
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
    this.name = 'InputError';
  }
}

/** The value at an issue's path, to tell an empty value from a short one. */
function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let current = root;
  for (const key of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

/**
 * One validation issue in this project's words ("problem; what to give"), never the validation
 * library's own text (`Invalid option: expected one of "a"|"b"`): every boundary reports issues
 * through here.
 */
export function issueText(issue: z.core.$ZodIssue, input?: unknown): string {
  const value = valueAt(input, issue.path);
  if (issue.code === 'invalid_value' && issue.values.length > 0) return `must be one of ${issue.values.map(String).join(', ')}`;
  if (issue.code === 'invalid_type' && value === undefined) return 'is required';
  if (issue.code === 'too_small' && issue.origin === 'string' && value === '' && !/empty/.test(issue.message)) return `is empty; ${issue.message}`;
  return issue.message;
}

/** Parses with a zod schema at a boundary; failures become an InputError naming each field. */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, what?: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw new InputError(
    parsed.error.issues.map((issue) => {
      const field = [what, ...issue.path.map(String)].filter(Boolean).join('.');
      return `${field || 'input'}: ${issueText(issue, value)}`;
    }),
  );
}
