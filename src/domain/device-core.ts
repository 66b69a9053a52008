import type { AclRule } from './device';

/**
 * The device rules that workflow code needs, without zod (the schemas are in ./device; see
 * ./campaign-core for why workflow code stays clear of zod).
 */

export const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/** The MQTT username a device logs in with: its client id unless given (DESIGN.md, CLI). */
export function usernameOf(input: { clientId: string; username?: string }): string {
  return input.username ?? input.clientId;
}

/**
 * Least privilege: the device's own rules, then a final deny of everything else for this client,
 * because EMQX's `authorization.no_match` defaults to allow (reference emqx-v5-api.md §3).
 */
export function effectiveAcl(rules: AclRule[]): AclRule[] {
  return [...rules, { permission: 'deny', action: 'all', topic: '#' }];
}
