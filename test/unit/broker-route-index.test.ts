import { describe, expect, it } from 'vitest';
import type { Client, ConnectPacket } from 'aedes';
import { RouteIndex, SubscriptionTable } from '../../devstack/broker/route-index';
import { SessionRegistry } from '../../devstack/broker/sessions';
import { topicMatchesFilter } from '../../devstack/broker/topic';

/**
 * The dev broker's routing table (devstack/broker/route-index.ts) must find exactly the filters
 * that `topicMatchesFilter` (MQTT 3.1.1 section 4.7, EMQX's emqx_topic:match/2 as tested in
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/test/emqx_topic_SUITE.erl t_match1..3,
 * t_sys_match, 't_#_match') accepts, whatever else is subscribed.
 */

const FILTERS = ['#', '+', 'a', 'a/#', 'a/+', 'a/b', 'a/b/c', 'a/+/c', 'a/b/#', '+/b/+', '+/+/+/+', '$SYS/#', '$SYS/broker', 'a//c', '/a', '+/#', 'devices/d-1/jobs/+', 'devices/+/jobs/#'];
const TOPICS = ['a', 'a/b', 'a/b/c', 'a/x/c', 'a/b/c/d', 'b', 'x/b/y', '$SYS/broker', '$SYS/broker/uptime', '$share/x', 'a//c', '/a', '/', 'devices/d-1/jobs/j1', 'devices/d-2/jobs/j1/status', ''];

describe('RouteIndex', () => {
  const index = new RouteIndex<string>();
  FILTERS.forEach((filter, i) => index.add(filter, `s${i}`));

  it.each(TOPICS)('finds the filters topicMatchesFilter accepts for %j', (topic) => {
    expect(index.matchingFilters(topic).sort()).toEqual(FILTERS.filter((f) => topicMatchesFilter(topic, f)).sort());
    expect(index.hasMatch(topic)).toBe(FILTERS.some((f) => topicMatchesFilter(topic, f)));
  });

  it('counts subscriptions and distinct filters, and forgets a filter with its last subscriber', () => {
    const routes = new RouteIndex<string>();
    routes.add('a/+', 'x');
    routes.add('a/+', 'y');
    routes.add('a/+', 'y');
    routes.add('a/b/#', 'x');
    expect([routes.subscriptionCount(), routes.filterCount()]).toEqual([3, 2]);
    routes.remove('a/+', 'x');
    expect(routes.hasMatch('a/q')).toBe(true);
    routes.remove('a/+', 'y');
    routes.remove('a/+', 'nobody');
    expect(routes.hasMatch('a/q')).toBe(false);
    expect(routes.matchingFilters('a/b')).toEqual(['a/b/#']);
    routes.remove('a/b/#', 'x');
    expect([routes.subscriptionCount(), routes.filterCount(), routes.hasMatch('a/b')]).toEqual([0, 0, false]);
  });
});

describe('SubscriptionTable', () => {
  it('reports new and removed filters to the listener it follows, and nothing once unfollowed', () => {
    const seen: string[] = [];
    const table = new SubscriptionTable<number>();
    table.follow((filter, subscribed) => seen.push(`${subscribed ? '+' : '-'}${filter}`));
    table.set('a', 1).set('a', 2).set('b', 1);
    table.delete('a');
    table.delete('missing');
    table.clear();
    table.follow(undefined);
    table.set('c', 0);
    expect(seen).toEqual(['+a', '+b', '-a', '-b']);
    expect([...table.keys()]).toEqual(['c']);
  });
});

describe('SessionRegistry routes', () => {
  const qos1 = { qos: 1, nl: 0, rap: 0, rh: 0 };
  const connect = (registry: SessionRegistry, id: string, clean: boolean): Client => {
    const client = { id } as Client;
    registry.noteConnectPacket(client, { cmd: 'connect', clientId: id, protocolId: 'MQTT', protocolVersion: 4, clean, keepalive: 60 } satisfies ConnectPacket);
    return client;
  };

  it('routes a session while it is registered, live or offline, and drops the routes of a session taken over', () => {
    const registry = new SessionRegistry();
    const first = connect(registry, 'dev-1', false);
    registry.register(first).subscriptions.set('devices/dev-1/cmd', qos1);
    expect(registry.hasSubscriberFor('devices/dev-1/cmd')).toBe(true);

    // Takeover: the new connection starts with no subscriptions; the old one's are gone.
    const second = connect(registry, 'dev-1', false);
    const session = registry.register(second);
    expect(registry.hasSubscriberFor('devices/dev-1/cmd')).toBe(false);
    expect(registry.unregister(first)).toBeUndefined();
    session.subscriptions.set('devices/dev-1/+', qos1);
    expect([registry.subscriptionCount(), registry.routedFilters()]).toEqual([1, ['devices/dev-1/+']]);

    // Parked offline: still routed, and what it matches is queued.
    const leaving = registry.unregister(second);
    expect(leaving).toBe(session);
    const parked = registry.park(session);
    expect(parked).toBeDefined();
    expect(registry.hasSubscriberFor('devices/dev-1/cmd')).toBe(true);
    expect(registry.enqueueOffline({ topic: 'devices/dev-1/cmd', payload: Buffer.from('x'), qos: 1, retain: false }).queued).toBe(1);
    expect(registry.enqueueOffline({ topic: 'devices/dev-2/cmd', payload: Buffer.from('x'), qos: 1, retain: false }).queued).toBe(0);

    registry.takeOffline('dev-1');
    expect([registry.hasSubscriberFor('devices/dev-1/cmd'), registry.subscriptionCount(), registry.routedFilterCount()]).toEqual([false, 0, 0]);
    parked?.subscriptions.set('late/filter', qos1);
    expect(registry.hasSubscriberFor('late/filter')).toBe(false);
    registry.clearOffline();
  });
});
