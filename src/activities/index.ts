import type { EmqxClient } from '../emqx';
import type { History } from '../history';
import { createDeviceAdminActivities } from './device-admin';
import { createFleetActivities } from './fleet';
import { createStatsActivities } from './stats';

export interface ActivityDeps {
  emqx: EmqxClient;
  history: History;
}

/** Every activity the worker registers, closed over its dependencies (no globals). */
export const createActivities = (deps: ActivityDeps) => ({
  ...createDeviceAdminActivities(deps),
  ...createFleetActivities(deps),
  ...createStatsActivities(deps),
});

export type Activities = ReturnType<typeof createActivities>;
