/**
 * The command id rule, workflow-safe and light: the CLI checks ids with it before loading the
 * Temporal client (src/starter/command-input.ts), the contract re-exports it.
 */

/** `command/<clientId>/<commandId>`: the device first, so the Temporal UI lists a device's commands together. */
export function commandWorkflowId(clientId: string, commandId: string): string {
  return `command/${clientId}/${commandId}`;
}
