import type { FastifyInstance } from 'fastify';
import { NODE_NAME, subscriptionView } from '../../emqx-formats';
import { isValidTopicName, topicMatchesFilter } from '../../topic';
import type { ApiContext } from '../context';
import { apiError } from '../errors';
import { booleanParam, integerParam, pageRequest, paginate, queryValue, type Query } from '../pagination';

/**
 * `GET /subscriptions` (data/meta, despite the spec) and the routing table `GET /topics`
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_subscriptions.erl,
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_management/src/emqx_mgmt_api_topics.erl).
 */
export function registerSubscriptionRoutes(app: FastifyInstance, { sessions }: ApiContext): void {
  app.get<{ Querystring: Query }>('/api/v5/subscriptions', (request) => {
    const page = pageRequest(request.query);
    const clientid = queryValue(request.query, 'clientid');
    const topic = queryValue(request.query, 'topic');
    const qos = integerParam(request.query, 'qos');
    const matchTopic = queryValue(request.query, 'match_topic');
    const durable = booleanParam(request.query, 'durable');
    if (matchTopic !== undefined && !isValidTopicName(matchTopic)) throw apiError(400, 'INVALID_PARAMETER', 'match_topic_invalid');
    const all = [...sessions.list(), ...sessions.listOffline()].flatMap(subscriptionView);
    const selected = all.filter(
      (sub) =>
        (clientid === undefined || sub.clientid === clientid) &&
        (topic === undefined || sub.topic === topic) &&
        (qos === undefined || sub.qos === qos) &&
        (matchTopic === undefined || topicMatchesFilter(matchTopic, sub.topic)) &&
        (durable === undefined || durable === false),
    );
    return paginate(selected, page, { withCount: matchTopic === undefined });
  });

  app.get<{ Querystring: Query }>('/api/v5/topics', (request) => {
    const page = pageRequest(request.query);
    const topic = queryValue(request.query, 'topic');
    const routes = sessions
      .routedFilters()
      .filter((filter) => topic === undefined || filter === topic)
      .map((filter) => ({ topic: filter, node: NODE_NAME }));
    return paginate(routes, page, { withCount: true });
  });

  app.get<{ Params: { topic: string } }>('/api/v5/topics/:topic', (request) => {
    const routes = sessions.routedFilters().filter((filter) => filter === request.params.topic);
    if (routes.length === 0) throw apiError(404, 'TOPIC_NOT_FOUND', 'Topic not found');
    return routes.map((filter) => ({ topic: filter, node: NODE_NAME }));
  });
}
