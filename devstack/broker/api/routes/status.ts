import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EMQX_VERSION, NODE_NAME } from '../../emqx-formats';
import { queryValue, type Query } from '../pagination';

/**
 * `GET /api/v5/status` (no auth): text by default, JSON with `?format=json`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_status.erl).
 */
export function registerStatusRoutes(app: FastifyInstance): void {
  const status = (request: FastifyRequest<{ Querystring: Query }>, reply: FastifyReply): unknown => {
    if (queryValue(request.query, 'format') === 'json') {
      // The edition prefix comes first: `v` for the open-source edition (emqx_mgmt_api_status.erl vsn/0).
      return { rel_vsn: `v${EMQX_VERSION}`, node_name: NODE_NAME, broker_status: 'started', app_status: 'running' };
    }
    reply.type('text/plain');
    return `Node ${NODE_NAME} is started\nemqx is running`;
  };
  app.get<{ Querystring: Query }>('/api/v5/status', status);
  app.get<{ Querystring: Query }>('/status', status);
}
