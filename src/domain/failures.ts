/**
 * The message worth showing for a failure a workflow caught: Temporal wraps the real one
 * (ActivityFailure, ChildWorkflowFailure: "Activity task failed", "Child Workflow execution
 * failed") in causes, so the innermost message that is not empty is the reason.
 */
export function failureMessage(err: unknown): string {
  let current: unknown = err;
  let message = err instanceof Error ? err.message : String(err);
  while (current instanceof Error) {
    if (current.message) message = current.message;
    current = (current as { cause?: unknown }).cause;
  }
  return message;
}
