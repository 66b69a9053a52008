import type { FastifyReply } from 'fastify';

/**
 * 204 with no body, for handlers that do not await anything (they stay synchronous: an `async`
 * handler without `await` fails lint, and a synchronous handler must not return the reply).
 */
export function noContent(reply: FastifyReply): void {
  void reply.code(204).send();
}
