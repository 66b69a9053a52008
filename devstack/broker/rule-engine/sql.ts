import { isValidTopicFilter } from '../topic';

/**
 * The part of EMQX rule SQL this broker runs: `SELECT * FROM "t1", "t2" [WHERE ...]`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_rule_engine/src/emqx_rule_sqlparser.erl). The WHERE
 * clause is accepted and ignored, so a rule fires for every event of its FROM topics; receivers have to
 * tolerate extra events anyway.
 */

export class RuleSqlError extends Error {}

/** The `$events/...` topics whose events this broker emits. */
export const SUPPORTED_EVENT_TOPICS = [
  '$events/client_connected',
  '$events/client_disconnected',
  '$events/session_subscribed',
  '$events/session_unsubscribed',
] as const;

const STATEMENT = /^\s*SELECT\s+(.+?)\s+FROM\s+(.+?)(?:\s+WHERE\s+[\s\S]*)?\s*;?\s*$/is;

export function parseRuleSql(sql: string): { from: string[] } {
  const statement = STATEMENT.exec(sql);
  if (!statement) throw new RuleSqlError('expected SELECT * FROM "<topic>"[, "<topic>"...] [WHERE ...]');
  const [, fields = '', fromClause = ''] = statement;
  if (fields.trim() !== '*') throw new RuleSqlError('only SELECT * is supported by the dev broker');
  const from = splitFromClause(fromClause).map(parseFromItem);
  if (from.length === 0) throw new RuleSqlError('FROM needs at least one topic');
  return { from };
}

function splitFromClause(clause: string): string[] {
  const items: string[] = [];
  let current = '';
  let quote: string | undefined;
  for (const ch of clause) {
    if (quote) {
      current += ch;
      if (ch === quote) quote = undefined;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      current += ch;
    } else if (ch === ',') {
      items.push(current.trim());
      current = '';
    } else {
      current += ch;
    }
  }
  if (quote) throw new RuleSqlError('unterminated quote in FROM');
  if (current.trim() !== '') items.push(current.trim());
  return items;
}

function parseFromItem(item: string): string {
  const quoted = /^(["'])(.*)\1$/s.exec(item);
  const topic = quoted ? (quoted[2] ?? '') : item;
  if (!quoted && /\s/.test(topic)) throw new RuleSqlError(`cannot parse FROM item ${item}`);
  if (topic.startsWith('$events/')) {
    if (!/^\$events\/[a-z_/]+$/.test(topic)) throw new RuleSqlError(`invalid event topic ${topic}`);
    return topic;
  }
  if (!isValidTopicFilter(topic)) throw new RuleSqlError(`invalid topic filter ${topic}`);
  return topic;
}
