import type { Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { ALL_SEARCH_ATTRIBUTES } from '../domain/search-attributes';

const INDEXED_TYPE = {
  KEYWORD: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  INT: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT,
} as const;

/**
 * Registers the project's search attributes on a real cluster (the dev stack registers them at
 * start). Idempotent: attributes that already exist are left alone; a type clash is an error.
 */
export async function registerSearchAttributes(connection: Connection, namespace: string): Promise<{ added: string[]; existing: string[] }> {
  const current = await connection.operatorService.listSearchAttributes({ namespace });
  const known = current.customAttributes ?? {};
  const added: string[] = [];
  const existing: string[] = [];
  const toAdd: Record<string, temporal.api.enums.v1.IndexedValueType> = {};
  for (const key of ALL_SEARCH_ATTRIBUTES) {
    const want = INDEXED_TYPE[key.type];
    const have = known[key.name];
    if (have === undefined) {
      toAdd[key.name] = want;
      added.push(key.name);
    } else if (have !== want) {
      throw new Error(`search attribute ${key.name} exists with another type; remove it or rename ours`);
    } else existing.push(key.name);
  }
  if (added.length > 0) await connection.operatorService.addSearchAttributes({ namespace, searchAttributes: toAdd });
  return { added, existing };
}
