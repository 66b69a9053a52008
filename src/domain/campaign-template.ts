import { z } from 'zod';
import { TopicName, topicNameProblem } from './device';

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

const escapeJson = (value: string): string => JSON.stringify(value).slice(1, -1);

/** A value that is valid JSON only inside a string literal (escaped there), never outside one. */
const STRING_ONLY_PROBE = 'probe"\\ value';
const stringOnlyTemplates = new Map<string, boolean>();

/**
 * Whether every placeholder of a JSON template sits inside a string literal, where any escaped
 * value keeps the JSON valid: then rendered payloads need no parse each (a campaign renders
 * 100,000). Decided once per template by rendering a probe that is only valid inside a string.
 */
function placeholdersOnlyInStrings(template: string): boolean {
  let known = stringOnlyTemplates.get(template);
  if (known === undefined) {
    try {
      JSON.parse(template.replace(PLACEHOLDER, escapeJson(STRING_ONLY_PROBE)));
      known = true;
    } catch {
      known = false;
    }
    if (stringOnlyTemplates.size >= 64) stringOnlyTemplates.clear();
    stringOnlyTemplates.set(template, known);
  }
  return known;
}

/** JSON payloads: values are JSON-escaped (placeholders belong inside strings) and the result must parse. */
export function renderJson(template: string, clientId: string, values?: Record<string, string>): string {
  const text = template.replace(PLACEHOLDER, (_, name: string) => escapeJson(valueOf(name, clientId, values)));
  if (placeholdersOnlyInStrings(template)) return text;
  try {
    JSON.parse(text);
  } catch {
    throw new TemplateError('the payload is not valid JSON once its placeholders are filled');
  }
  return text;
}

export function renderTopic(template: string, clientId: string, values?: Record<string, string>): string {
  const topic = renderText(template, clientId, values);
  const problem = topicNameProblem(topic);
  if (problem) throw new TemplateError(`topic "${topic}" ${problem}`);
  return topic;
}
