import type { FastifyInstance } from 'fastify';
import { PublishRejected } from '../../publish';
import type { ApiContext } from '../context';
import { ApiError, badRequest } from '../errors';

/**
 * `POST /publish` and `/publish/bulk`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_publish.erl). In a bulk
 * request every item is validated before anything is published; one bad item rejects the batch with that
 * item's error body.
 */
export function registerPublishRoutes(app: FastifyInstance, { publisher, metrics }: ApiContext): void {
  const prepare = (body: unknown): ReturnType<typeof publisher.prepare> => {
    try {
      return publisher.prepare(body);
    } catch (err) {
      if (err instanceof PublishRejected) throw new ApiError(400, err.body);
      throw err;
    }
  };

  app.post('/api/v5/publish', async (request, reply) => {
    const message = prepare(request.body);
    metrics.countReceivedMessage(message.qos);
    const result = await publisher.publish(message);
    return reply.code(result.delivered ? 200 : 202).send(result.body);
  });

  app.post('/api/v5/publish/bulk', async (request, reply) => {
    if (!Array.isArray(request.body)) throw badRequest('the body must be a JSON array of messages');
    if (request.body.length === 0) throw badRequest('the message list must not be empty');
    const messages = (request.body as unknown[]).map(prepare);
    const results = [];
    for (const message of messages) {
      metrics.countReceivedMessage(message.qos);
      results.push(await publisher.publish(message));
    }
    return reply.code(results.every((r) => r.delivered) ? 200 : 202).send(results.map((r) => r.body));
  });
}
