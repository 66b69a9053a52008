import { z } from 'zod';
import { TopicName, topicNameProblem } from './device';
import { identifierProblem } from '../device';

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
  if (value === undefined) throw new TemplateError(`no value for \${${name}}: add a ${name} column to the targets CSV`);
  return value;
}

/** Templates up to this length are remembered (64 of them at most): a payload template may be 1 MB. */
const CACHED_TEMPLATE_CHARS = 64 * 1024;

/** Remembers a per-template result in a small bounded cache. */
function remember<V>(cache: Map<string, V>, template: string, value: V): V {
  if (template.length > CACHED_TEMPLATE_CHARS) return value;
  if (cache.size >= 64) cache.clear();
  cache.set(template, value);
  return value;
}

/** A template split once into literal text and placeholder names, alternating: [text, name, text, ..., text]. */
const compiled = new Map<string, string[]>();

function partsOf(template: string): string[] {
  return compiled.get(template) ?? remember(compiled, template, template.split(PLACEHOLDER));
}

/** Fills the placeholders; `escape` applies to the values (not to the template's own text). */
function fill(
  template: string,
  clientId: string,
  values: Record<string, string> | undefined,
  escape?: (value: string, name: string) => string,
): string {
  const parts = partsOf(template);
  let out = parts[0] as string;
  for (let i = 1; i < parts.length; i += 2) {
    const name = parts[i] as string;
    const value = valueOf(name, clientId, values);
    out += (escape ? escape(value, name) : value) + (parts[i + 1] as string);
  }
  return out;
}

export function renderText(template: string, clientId: string, values?: Record<string, string>): string {
  return fill(template, clientId, values);
}

const NEEDS_JSON_ESCAPE = /["\\\u0000-\u001f\u2028\u2029]|[\ud800-\udfff]/;
const escapeJson = (value: string): string => (NEEDS_JSON_ESCAPE.test(value) ? JSON.stringify(value).slice(1, -1) : value);

/** A value that is valid JSON only inside a string literal (escaped there), never outside one. */
const STRING_ONLY_PROBE = 'probe"\\ value';
const stringOnlyTemplates = new Map<string, boolean>();

/**
 * Whether every placeholder of a JSON template sits inside a string literal, where any escaped
 * value keeps the JSON valid: then rendered payloads need no parse each (a campaign renders
 * 100,000). Decided once per template by rendering a probe that is only valid inside a string.
 */
function placeholdersOnlyInStrings(template: string): boolean {
  const known = stringOnlyTemplates.get(template);
  if (known !== undefined) return known;
  try {
    JSON.parse(template.replace(PLACEHOLDER, escapeJson(STRING_ONLY_PROBE)));
    return remember(stringOnlyTemplates, template, true);
  } catch {
    return remember(stringOnlyTemplates, template, false);
  }
}

/** JSON payloads: values are JSON-escaped (placeholders belong inside strings) and the result must parse. */
export function renderJson(template: string, clientId: string, values?: Record<string, string>): string {
  const text = fill(template, clientId, values, escapeJson);
  if (placeholdersOnlyInStrings(template)) return text;
  try {
    JSON.parse(text);
  } catch {
    throw new TemplateError('the payload is not valid JSON once its placeholders are filled');
  }
  return text;
}

/** A value placed in a topic follows the identifier rule: a `/`, `+` or `#` in it would change the topic's shape. */
function topicValue(value: string, name: string): string {
  const problem = identifierProblem(value);
  if (problem) throw new TemplateError(`the value of \${${name}} ${problem}`);
  return value;
}

export function renderTopic(template: string, clientId: string, values?: Record<string, string>): string {
  const topic = fill(template, clientId, values, topicValue);
  const problem = topicNameProblem(topic);
  if (problem) throw new TemplateError(`topic "${topic}" ${problem}`);
  return topic;
}
