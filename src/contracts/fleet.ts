import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { AclRule, PasswordHash, Subscription } from '../domain/schemas/device';

/**
 * The fleet-provisioning workflow's contract (provisionFleet, one child provisionFleetChunk per
 * chunk): the request, the chunks the client signals, progress and result.
 */

/** Devices per chunk signal (and per child workflow). */
export const FLEET_CHUNK_SIZE = 1000;

export interface FleetDevice {
  clientId: string;
  username: string;
  /** Hashed by the client (src/starter/client/credentials.ts): no plaintext password reaches the history. */
  credentials: PasswordHash;
  acl: AclRule[];
  subscriptions: Subscription[];
  tags: string[];
}

export interface FleetChunk {
  index: number;
  devices: FleetDevice[];
}

export interface FleetRequest {
  fleetId: string;
  total: number;
  chunkCount: number;
}

export interface FleetFailure {
  clientId: string;
  error: string;
}

export interface FleetChunkResult {
  provisioned: number;
  failed: number;
  failures: FleetFailure[];
}

export interface FleetResult extends FleetChunkResult {
  fleetId: string;
  total: number;
  status: 'completed';
}

export interface FleetProgress {
  total: number;
  chunksReceived: number;
  chunksDone: number;
  provisioned: number;
  failed: number;
}

export const fleetChunkSignal = defineSignal<[FleetChunk]>('fleetChunk');
export const fleetProgressQuery = defineQuery<FleetProgress>('fleetProgress');
