import os from 'node:os';
import type { FastifyInstance } from 'fastify';
import { EMQX_VERSION, NODE_NAME } from '../../emqx-formats';
import type { ApiContext } from '../context';
import { notFound } from '../errors';
import { queryValue, type Query } from '../pagination';

/** `/stats`, `/metrics`, `/nodes`, `/monitor_current` (docs/emqx-compatibility.md), for the single node. */
export function registerObservabilityRoutes(app: FastifyInstance, context: ApiContext): void {
  const { stats, metrics } = context;
  const requireNode = (node: string | undefined): void => {
    if (node !== undefined && node !== NODE_NAME) throw notFound('Node not found');
  };

  app.get<{ Querystring: Query }>('/api/v5/stats', (request) => {
    if (queryValue(request.query, 'aggregate') === 'true') return stats.snapshot();
    return [{ node: NODE_NAME, ...stats.snapshot(), 'durable_subscriptions.count': 0 }];
  });

  // emqx_mgmt_api_metrics.erl cluster_metrics/1: a node that is not running (or not a node name
  // at all) contributes nothing, so the answer is an empty list rather than an error.
  app.get<{ Querystring: Query }>('/api/v5/metrics', (request) => {
    if (queryValue(request.query, 'aggregate') === 'true') return metrics.snapshot();
    const node = queryValue(request.query, 'node');
    if (node !== undefined && node !== NODE_NAME) return [];
    return [{ node: NODE_NAME, ...metrics.snapshot() }];
  });

  app.get('/api/v5/nodes', () => [nodeInfo(context)]);

  app.get<{ Params: { node: string } }>('/api/v5/nodes/:node', (request) => {
    requireNode(request.params.node);
    return nodeInfo(context);
  });

  app.get<{ Params: { node: string } }>('/api/v5/nodes/:node/stats', (request) => {
    requireNode(request.params.node);
    return stats.snapshot();
  });

  app.get<{ Params: { node: string } }>('/api/v5/nodes/:node/metrics', (request) => {
    requireNode(request.params.node);
    return metrics.snapshot();
  });

  app.get('/api/v5/monitor_current', () => monitorCurrent(context));

  app.get<{ Params: { node: string } }>('/api/v5/monitor_current/nodes/:node', (request) => {
    requireNode(request.params.node);
    return monitorCurrent(context);
  });
}

function nodeInfo({ sessions, startedAt }: ApiContext): Record<string, unknown> {
  const [load1 = 0, load5 = 0, load15 = 0] = os.loadavg();
  const round = (n: number): number => Math.round(n * 100) / 100;
  return {
    node: NODE_NAME,
    node_status: 'running',
    version: EMQX_VERSION,
    edition: 'Opensource',
    role: 'core',
    uptime: Date.now() - startedAt,
    connections: sessions.count(),
    live_connections: sessions.count(),
    cluster_sessions: sessions.count(),
    load1: round(load1),
    load5: round(load5),
    load15: round(load15),
    memory_total: os.totalmem(),
    memory_used: process.memoryUsage().rss,
    max_fds: 1_048_576,
    process_available: 2_097_152,
    process_used: sessions.count(),
    otp_release: '26.2.5.2-1/14.2.5.2',
    sys_path: process.cwd(),
    log_path: 'log',
  };
}

function monitorCurrent({ sessions, stats, rates }: ApiContext): Record<string, number> {
  return {
    connections: sessions.count(),
    live_connections: sessions.count(),
    subscriptions: sessions.subscriptionCount(),
    shared_subscriptions: 0,
    topics: sessions.routedFilters().length,
    retained_msg_count: stats.retainedCount(),
    subscriptions_durable: 0,
    disconnected_durable_sessions: 0,
    ...rates.rates(),
    persisted_rate: 0,
  };
}
