/**
 * Statistics, metrics, nodes and health
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_stats.erl and its
 * siblings). Stats are gauges (`live_connections.count` is "devices online now"); metrics are counters since
 * node start.
 */
import { z } from 'zod';
import type { CallOptions, EmqxHttp } from './http';
import { parseMaybeWrapped } from './parse';
import { Counters, NodeCounters, NodeInfo, StatusJson } from './schemas';

export interface BrokerStatus {
  /** `GET /status` answered 200. */
  running: boolean;
  status: number;
  nodeName?: string;
  /** `rel_vsn` as EMQX prints it: the edition prefix and the release, e.g. `v5.8.9` or `e5.8.9` (emqx_mgmt_api_status.erl vsn/0). */
  version?: string;
  brokerStatus?: string;
}

function sumCounters(nodes: readonly NodeCounters[]): Counters {
  const total: Counters = {};
  for (const { counters } of nodes) {
    for (const [key, value] of Object.entries(counters)) total[key] = (total[key] ?? 0) + value;
  }
  return total;
}

/** Cluster-wide; an answer per node (an EMQX that ignores `aggregate`) is summed. */
const Aggregate = z.union([Counters.refine((c) => Object.keys(c).length > 0, 'no counters'), z.array(NodeCounters).transform(sumCounters)]);
const PerNode = z.union([z.array(NodeCounters), NodeCounters.transform((node) => [node])]);

async function aggregate(http: EmqxHttp, path: '/stats' | '/metrics', opts: CallOptions): Promise<Counters> {
  const res = await http.request({ method: 'GET', path, query: { aggregate: true }, signal: opts.signal });
  return parseMaybeWrapped(Aggregate, res, { method: 'GET', path });
}

async function perNode(http: EmqxHttp, path: '/stats' | '/metrics', opts: CallOptions): Promise<NodeCounters[]> {
  const res = await http.request({ method: 'GET', path, query: { aggregate: false }, signal: opts.signal });
  return parseMaybeWrapped(PerNode, res, { method: 'GET', path });
}

/** Cluster gauges, e.g. `live_connections.count`, `subscriptions.count`, `topics.count`. */
export function getStats(http: EmqxHttp, opts: CallOptions = {}): Promise<Counters> {
  return aggregate(http, '/stats', opts);
}

export function getNodeStats(http: EmqxHttp, opts: CallOptions = {}): Promise<NodeCounters[]> {
  return perNode(http, '/stats', opts);
}

/** Cluster counters, e.g. `messages.received`, `messages.sent`, `messages.dropped`. */
export function getMetrics(http: EmqxHttp, opts: CallOptions = {}): Promise<Counters> {
  return aggregate(http, '/metrics', opts);
}

export function getNodeMetrics(http: EmqxHttp, opts: CallOptions = {}): Promise<NodeCounters[]> {
  return perNode(http, '/metrics', opts);
}

export async function listNodes(http: EmqxHttp, opts: CallOptions = {}): Promise<NodeInfo[]> {
  const res = await http.request({ method: 'GET', path: '/nodes', signal: opts.signal });
  return parseMaybeWrapped(z.array(NodeInfo), res, { method: 'GET', path: '/nodes' });
}

/**
 * Health: `GET /status` needs no credentials and answers 200 when the node runs, 503 otherwise.
 * Throws `EmqxUnavailableError` only when nothing answers.
 */
export async function getStatus(http: EmqxHttp, opts: CallOptions = {}): Promise<BrokerStatus> {
  const res = await http.send({ method: 'GET', path: '/status', query: { format: 'json' }, auth: false, signal: opts.signal });
  const status: BrokerStatus = { running: res.status === 200, status: res.status };
  const json = StatusJson.safeParse(res.body);
  if (json.success) {
    if (json.data.node_name !== undefined) status.nodeName = json.data.node_name;
    if (json.data.rel_vsn !== undefined) status.version = json.data.rel_vsn;
    if (json.data.broker_status !== undefined) status.brokerStatus = json.data.broker_status;
  }
  return status;
}
