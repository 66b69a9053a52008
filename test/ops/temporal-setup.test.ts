import { describe, expect, it } from 'vitest';
import { registerSearchAttributes } from '../../src/starter/temporal-setup';
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
});
