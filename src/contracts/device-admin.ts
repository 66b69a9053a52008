import { defineSignal } from '@temporalio/workflow';
import type { AclRule, AlarmPolicy, Subscription } from '../domain/schemas/device';
import type { PasswordHash } from '../domain/device';

/**
 * The device-administration workflows' contract (provisionDevice, deprovisionDevice,
 * rotateCredentials, kickDevice, setDeviceAcl, setDesiredSubscriptions): what the client library
 * sends and gets back, and the signal they send the device's presence workflow.
 */

/** Provisioning changed the device record (alarm policy) or deprovisioned the device: its presence workflow reloads it. */
export const deviceRecordChangedSignal = defineSignal('deviceRecordChanged');

export interface ProvisionRequest {
  clientId: string;
  username?: string;
  /** The password as EMQX stores it; the client hashed it, so no plaintext reaches the history. */
  credentials: PasswordHash;
  /** Whether the client generated the password (recorded in the audit, never the password). */
  passwordGenerated: boolean;
  acl: AclRule[];
  subscriptions: Subscription[];
  alarmPolicy?: AlarmPolicy;
  tags: string[];
}

export interface ProvisionResult {
  clientId: string;
  username: string;
  status: 'completed';
  online: boolean;
  subscriptionsApplied: number;
}

export interface DeprovisionResult {
  clientId: string;
  status: 'completed';
  kicked: boolean;
  hadCredentials: boolean;
}

export interface RotateRequest {
  clientId: string;
  /** The new password as EMQX stores it (hashed by the client). */
  credentials: PasswordHash;
  passwordGenerated: boolean;
  kick: boolean;
}

export interface RotateResult {
  clientId: string;
  status: 'completed';
  kicked: boolean;
}
