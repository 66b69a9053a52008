import { z } from 'zod';
import { TopicName } from './device';

/**
 * Campaign message templates: `${clientid}` (EMQX's placeholder spelling) and per-target values
 * `${name}` in the topic and in text or JSON payloads. Pure, shared by the starter (which renders
 * every target once to reject bad input before anything starts) and the publishing activity.
 */

export const TEMPLATE_VARIABLE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const PLACEHOLDER = /\$\{([A-Za-z_][A-Za-z0-9_]{0,63})\}/g;
const CLIENT_ID = 'clientid';

/** A topic template: valid as a topic name once placeholders are filled (no wildcards anywhere). */
export const TopicTemplate = z
  .string()
  .min(1, 'must not be empty')
  .max(1024, 'must be at most 1024 characters')
  .refine((v) => TopicName.safeParse(v.replace(PLACEHOLDER, 'x')).success, 'must be a topic name without wildcards ("+" or "#")');

/** The variables a template uses, `clientid` included. */
export function templateVariables(template: string): string[] {
  return [...new Set([...template.matchAll(PLACEHOLDER)].map((m) => m[1] as string))];
}

export class TemplateError extends Error {
  readonly type = 'TemplateError';
}

function valueOf(name: string, clientId: string, values: Record<string, string> | undefined): string {
  if (name === CLIENT_ID) return clientId;
  const value = values?.[name];
  if (value === undefined) throw new TemplateError(`no value for \${${name}}`);
  return value;
}

export function renderText(template: string, clientId: string, values?: Record<string, string>): string {
  return template.replace(PLACEHOLDER, (_, name: string) => valueOf(name, clientId, values));
}

/** JSON payloads: values are JSON-escaped (placeholders belong inside strings) and the result must parse. */
export function renderJson(template: string, clientId: string, values?: Record<string, string>): string {
  const text = template.replace(PLACEHOLDER, (_, name: string) => JSON.stringify(valueOf(name, clientId, values)).slice(1, -1));
  try {
    JSON.parse(text);
  } catch {
    throw new TemplateError('the payload is not valid JSON once its placeholders are filled');
  }
  return text;
}

export function renderTopic(template: string, clientId: string, values?: Record<string, string>): string {
  const topic = renderText(template, clientId, values);
  const parsed = TopicName.safeParse(topic);
  if (!parsed.success) throw new TemplateError(`topic "${topic}" ${parsed.error.issues[0]?.message ?? 'is invalid'}`);
  return topic;
}
