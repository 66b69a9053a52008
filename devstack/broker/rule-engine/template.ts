/**
 * EMQX `${...}` templates in an HTTP action's path, headers and body
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_utils/src/emqx_template.erl):
 * `${clientid}`, nested `${flags.retain}`, and `${.}` for the whole selected event.
 */

export function renderTemplate(template: string, event: Record<string, unknown>): string {
  return template.replace(/\$\{([^}]*)\}/g, (_match, path: string) => formatValue(lookup(event, path.trim())));
}

/** The request body: the whole event as JSON when no body template is set (or it is `${.}`). */
export function renderBody(template: string | undefined, event: Record<string, unknown>): string {
  if (template === undefined || template.trim() === '' || template.trim() === '${.}') return JSON.stringify(event);
  return renderTemplate(template, event);
}

function lookup(event: Record<string, unknown>, path: string): unknown {
  if (path === '.' || path === '') return event;
  let value: unknown = event;
  for (const key of path.split('.')) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

function formatValue(value: unknown): string {
  if (value === undefined || value === null) return 'undefined';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return value.toString();
  return JSON.stringify(value);
}
