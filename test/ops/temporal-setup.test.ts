import type { Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { registerSearchAttributes } from '../../src/temporal/search-attribute-setup';
import { stackEndpoints, temporalClient } from '../harness';

describe('device-ops temporal setup', () => {
  it('registers the search attributes idempotently (the test server already has them)', async () => {
    const { connection, close } = await temporalClient();
    try {
      const result = await registerSearchAttributes(connection, stackEndpoints().namespace);
      expect(result.added).toEqual([]);
      expect(result.existing.sort()).toEqual(['AlarmLevel', 'CampaignId', 'DeviceId', 'DeviceOperation', 'Presence']);
    } finally {
      await close();
    }
  });

  // The dev server starts with them all, so the paths below use a stand-in for the operator service.
  const { KEYWORD, INT } = { KEYWORD: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD, INT: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT };
  const clusterWith = (customAttributes: Record<string, number>) => {
    const addCalls: Record<string, number>[] = [];
    const connection = {
      operatorService: {
        listSearchAttributes: () => Promise.resolve({ customAttributes }),
        addSearchAttributes: (request: { searchAttributes: Record<string, number> }) => {
          addCalls.push(request.searchAttributes);
          return Promise.resolve({});
        },
      },
    } as unknown as Connection;
    return { connection, addCalls };
  };

  it('adds exactly the missing ones, with their types', async () => {
    const { connection, addCalls } = clusterWith({ DeviceId: KEYWORD, AlarmLevel: INT });
    const result = await registerSearchAttributes(connection, 'default');
    expect(result.existing.sort()).toEqual(['AlarmLevel', 'DeviceId']);
    expect(result.added.sort()).toEqual(['CampaignId', 'DeviceOperation', 'Presence']);
    expect(addCalls).toEqual([{ CampaignId: KEYWORD, DeviceOperation: KEYWORD, Presence: KEYWORD }]);
  });

  it('refuses an attribute that exists with another type, adding nothing', async () => {
    const { connection, addCalls } = clusterWith({ DeviceId: INT });
    await expect(registerSearchAttributes(connection, 'default')).rejects.toThrow(/DeviceId exists with another type/);
    expect(addCalls).toEqual([]);
  });
});
