import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

/**
 * Search attributes (docs/cli.md lists the queries): registered by the dev stack and by the setup command,
 * set on every workflow so an operator can type `DeviceId="x"` in the Temporal UI. They are stored
 * in plaintext (the codec does not cover them), so they hold ids and states, never secrets.
 */
export const DeviceIdKey = defineSearchAttributeKey('DeviceId', SearchAttributeType.KEYWORD);
export const CampaignIdKey = defineSearchAttributeKey('CampaignId', SearchAttributeType.KEYWORD);
export const DeviceOperationKey = defineSearchAttributeKey('DeviceOperation', SearchAttributeType.KEYWORD);
export const PresenceKey = defineSearchAttributeKey('Presence', SearchAttributeType.KEYWORD);
export const AlarmLevelKey = defineSearchAttributeKey('AlarmLevel', SearchAttributeType.INT);

export const ALL_SEARCH_ATTRIBUTES = [DeviceIdKey, CampaignIdKey, DeviceOperationKey, PresenceKey, AlarmLevelKey] as const;
