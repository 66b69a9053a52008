/**
 * A bench child process (bench/device-fleet.ts, bench/job-agents.ts) takes its commands as IPC
 * messages from the parent and answers each with one reply: the handler's result or the error.
 */
export function answerParentCommands<C>(handle: (command: C) => Promise<Record<string, unknown>>): void {
  process.on('message', (command: C) => {
    handle(command).then(
      (reply) => process.send?.(reply),
      (err: unknown) => process.send?.({ ok: false, error: err instanceof Error ? err.message : String(err) }),
    );
  });
}
