import { describe, expect, it } from 'vitest';
import { decideSubscription, realTopicOf, renderedAcl, subscriptionProblems, topicMatches } from '../../src/domain/acl-match';
import type { AclRule } from '../../src/domain/schemas/device';

/**
 * EMQX's own cases, as the specification of the project's subscription check:
 * - https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/test/emqx_topic_SUITE.erl (t_match1, t_match2,
 *   t_sigle_level_match, t_sys_match, 't_#_match') for emqx_topic:match/2;
 * - https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/test/emqx_authz/emqx_authz_rule_SUITE.erl
 *   (t_match, t_matches) for emqx_authz_rule (first match wins, eq, placeholders).
 */

const test = { clientId: 'test', username: 'test' };
const rule = (permission: AclRule['permission'], action: AclRule['action'], topic: string): AclRule => ({ permission, action, topic });

describe('topicMatches (emqx_topic:match/2)', () => {
  it.each([
    // t_match1
    ['a/b/c', 'a/b/+', true],
    ['a/b/c', 'a/#', true],
    ['abcd/ef/g', '#', true],
    ['abc', '+', true],
    ['a/b/c', 'a/c/d', false],
    ['$share/x/y', '+', false],
    ['$share/x/y', '#', false],
    ['$share/x/y', '+/+/#', false],
    ['house/1/sensor/0', 'house/+', false],
    ['house', 'house/+', false],
    // t_match2
    ['sport/tennis/player1', 'sport/tennis/player1/#', true],
    ['sport', 'sport/#', true],
    ['/sport/football/score/1', '#', true],
    ['TopicA/B', '+/+', true],
    // t_sigle_level_match
    ['sport/tennis/player1/ranking', 'sport/tennis/+', false],
    ['sport/', 'sport/+', true],
    ['/finance', '+/+', true],
    ['/finance', '+', false],
    ['/devices/$dev1/online', '/devices/+/online', true],
    // t_sys_match and 't_#_match'
    ['$SYS/broker/clients/testclient', '$SYS/#', true],
    ['$SYS/broker', '+/+', false],
    ['$SYS/broker', '#', false],
    ['a/b/$c', 'a/#', true],
  ])('%s under %s: %s', (name, filter, expected) => {
    expect(topicMatches(name, filter)).toBe(expected);
  });

  it('matches a requested filter word by word, as EMQX authorizes a SUBSCRIBE (a "+" rule takes a "#" word too)', () => {
    expect(topicMatches('devices/d1/#', 'devices/d1/#')).toBe(true);
    expect(topicMatches('devices/+/cmd', 'devices/d1/cmd')).toBe(false);
    expect(topicMatches('devices/#', 'devices/+')).toBe(true);
    expect(topicMatches('devices/d1/cmd', 'devices/+/cmd')).toBe(true);
  });
});

describe('decideSubscription (emqx_authz_rule:matches/4 over the device rules and the final deny)', () => {
  it('first match wins (t_matches)', () => {
    const rules = [rule('deny', 'subscribe', 'topic/test'), rule('allow', 'all', 'topic/test')];
    expect(decideSubscription(rules, test, 'topic/test')).toEqual({ allowed: false, ruleIndex: 0 });
    expect(decideSubscription(rules.slice().reverse(), test, 'topic/test')).toEqual({ allowed: true, ruleIndex: 0 });
  });

  it('"eq" matches the literal filter only (t_match: [{eq, "#"}, {eq, "+"}])', () => {
    const rules = [rule('allow', 'all', 'eq #'), rule('allow', 'all', 'eq +')];
    expect(decideSubscription(rules, test, '#')).toMatchObject({ allowed: true, ruleIndex: 0 });
    expect(decideSubscription(rules, test, '+')).toMatchObject({ allowed: true, ruleIndex: 1 });
    // "topic/test" matches neither eq rule: the final deny decides.
    expect(decideSubscription(rules, test, 'topic/test')).toEqual({ allowed: false, ruleIndex: 2 });
    // eq topics are never filled: "eq t/${clientid}" is that text.
    expect(decideSubscription([rule('allow', 'subscribe', 'eq t/${clientid}')], test, 't/test').allowed).toBe(false);
    expect(decideSubscription([rule('allow', 'subscribe', 'eq t/${clientid}')], test, 't/${clientid}').allowed).toBe(true);
  });

  it('fills ${clientid} and ${username} (t_match: "t/foo${username}boo")', () => {
    const rules = [rule('allow', 'subscribe', 't/foo${username}boo'), rule('allow', 'subscribe', 'c/${clientid}/#')];
    expect(decideSubscription(rules, { clientId: 'fake', username: 'test' }, 't/footestboo').allowed).toBe(true);
    expect(decideSubscription(rules, { clientId: 'fake', username: 'test' }, 't/foo${username}boo').allowed).toBe(false);
    expect(decideSubscription(rules, { clientId: 'fake', username: 'test' }, 'c/fake/cmd').allowed).toBe(true);
    expect(decideSubscription(rules, { clientId: 'fake', username: 'test' }, 'c/other/cmd').allowed).toBe(false);
  });

  it('a publish rule does not allow subscribing (t_match: {allow, all, publish, ["#"]} is nomatch for subscribe)', () => {
    expect(decideSubscription([rule('allow', 'publish', '#')], test, 'topic/test')).toEqual({ allowed: false, ruleIndex: 1 });
  });

  it('does not rely on no_match: a $-topic passes the final "deny all #" unmatched and is refused', () => {
    // t_sys_match: "#" does not match "$SYS/..."; EMQX would fall to no_match (allow by default).
    expect(decideSubscription([], test, '$SYS/brokers/#')).toEqual({ allowed: false, ruleIndex: null });
    expect(decideSubscription([rule('allow', 'subscribe', '$SYS/#')], test, '$SYS/brokers/#').allowed).toBe(true);
  });

  it('checks a shared subscription by its real topic (emqx_topic:get_shared_real_topic/1)', () => {
    expect(realTopicOf('$share/g1/devices/test/cmd')).toBe('devices/test/cmd');
    expect(realTopicOf('$queue/devices/test/cmd')).toBe('devices/test/cmd');
    const rules = [rule('allow', 'subscribe', 'devices/${clientid}/cmd')];
    expect(decideSubscription(rules, test, '$share/g1/devices/test/cmd').allowed).toBe(true);
    expect(decideSubscription(rules, test, '$share/g1/devices/other/cmd').allowed).toBe(false);
  });

  it('a placeholder only known at connect time cannot allow, and as a deny it counts as denying', () => {
    expect(decideSubscription([rule('allow', 'subscribe', 'c/${cert_common_name}')], test, 'c/x').allowed).toBe(false);
    expect(decideSubscription([rule('deny', 'subscribe', 'c/${zone}'), rule('allow', 'subscribe', 'c/#')], test, 'c/x')).toEqual({
      allowed: false,
      ruleIndex: 0,
      uncertain: true,
    });
  });
});

describe('subscriptionProblems and renderedAcl', () => {
  it('names the topic and the rule that denies it, or that none allows it, and the fix', () => {
    const rules = [rule('deny', 'subscribe', 'devices/+/secret'), rule('allow', 'subscribe', 'devices/${clientid}/#')];
    const problems = subscriptionProblems(rules, { clientId: 'd1', username: 'd1' }, [
      { topic: 'devices/d1/cmd', qos: 1 },
      { topic: 'devices/d1/secret', qos: 0 },
      { topic: 'other/#', qos: 0 },
      { topic: '$SYS/#', qos: 0 },
    ]);
    expect(problems).toEqual([
      expect.stringMatching(/^subscription "devices\/d1\/secret" is denied by ACL rule 1 "deny subscribe devices\/\+\/secret".*add an ACL rule/),
      expect.stringMatching(/^subscription "other\/#": no ACL rule of the device allows it, so the final rule "deny all #" denies it/),
      expect.stringMatching(/^subscription "\$SYS\/#": no ACL rule allows it/),
    ]);
  });

  it('renders ${clientid} and ${username} for EMQX, leaves eq topics, and ends with the final deny', () => {
    const rules = [rule('allow', 'publish', 'up/${clientid}/${username}'), rule('allow', 'subscribe', 'eq cmd/${clientid}')];
    expect(renderedAcl(rules, { clientId: 'd1', username: 'u1' })).toEqual([
      rule('allow', 'publish', 'up/d1/u1'),
      rule('allow', 'subscribe', 'eq cmd/${clientid}'),
      rule('deny', 'all', '#'),
    ]);
  });
});
