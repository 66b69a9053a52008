import type { z } from 'zod';

/** Bad input from outside (CLI, client library, files): names every bad field and why. */
export class InputError extends Error {
  readonly type = 'InputError';
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
    this.name = 'InputError';
  }
}

/** Parses with a zod schema at a boundary; failures become an InputError naming each field. */
export function parseInput<S extends z.ZodType>(schema: S, value: unknown, what?: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw new InputError(
    parsed.error.issues.map((issue) => {
      const field = [what, ...issue.path.map(String)].filter(Boolean).join('.');
      return `${field || 'input'}: ${issue.message}`;
    }),
  );
}
