import type { EmqxClient } from '../emqx';
import type { History } from '../store';
import type { MqttPublisher } from '../emqx/mqtt-publisher';
import { createCampaignActivities } from './campaign';
import { createCommandActivities } from './command';
import { createDeviceAdminActivities } from './device-admin';
import { createFleetActivities } from './fleet';
import { createPresenceActivities, type PresenceSettings } from './presence';
import { createReconcileActivities } from './presence-reconcile';
import { createStatsActivities } from './stats';

export interface ActivityDeps {
  emqx: EmqxClient;
  history: History;
  /** Alarm defaults and webhook; without it DEFAULT_PRESENCE_SETTINGS applies and nothing is POSTed. */
  presence?: PresenceSettings;
  /** The MQTT publishing client for campaigns with transport `mqtt` (CAMPAIGN_MQTT_URL). */
  mqttPublisher?: MqttPublisher;
}

/** Every activity the worker registers, closed over its dependencies (no globals). */
export const createActivities = (deps: ActivityDeps) => ({
  ...createDeviceAdminActivities(deps),
  ...createFleetActivities(deps),
  ...createStatsActivities(deps),
  ...createPresenceActivities(deps),
  ...createReconcileActivities(deps),
  ...createCampaignActivities(deps),
  ...createCommandActivities(deps),
});

export type Activities = ReturnType<typeof createActivities>;
