import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { commandDeviceConnectedSignal } from '../contracts/command';
import type { WaitingCommands } from '../store/waiting-commands';

/**
 * Tells the commands waiting for a device that it has connected (called by the webhook adapter on
 * a connect). Never throws: a failure costs only the shortcut, the workflows' rechecks still come.
 */
export async function wakeCommands(temporal: Client, waiting: WaitingCommands, clientId: string, onError: (message: string) => void): Promise<void> {
  try {
    const workflowIds = await waiting.forDevice(clientId);
    await Promise.all(
      workflowIds.map((workflowId) =>
        temporal.workflow
          .getHandle(workflowId)
          .signal(commandDeviceConnectedSignal)
          .catch((err: unknown) => {
            if (!(err instanceof WorkflowNotFoundError)) throw err;
          }),
      ),
    );
  } catch (err) {
    onError(err instanceof Error ? err.message : String(err));
  }
}
