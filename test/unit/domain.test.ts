import { describe, expect, it } from 'vitest';
import { ClientId, ProvisionInput, TopicName, effectiveAcl, parseAclRule, parseSubscription } from '../../src/domain/device';
import { InputError, parseInput } from '../../src/domain/input-error';

describe('device input validation', () => {
  it('parses ACL rules and subscriptions in the CLI forms', () => {
    expect(parseAclRule('allow publish devices/${clientid}/up')).toEqual({ permission: 'allow', action: 'publish', topic: 'devices/${clientid}/up' });
    expect(parseSubscription('cmd/+/x:1')).toEqual({ topic: 'cmd/+/x', qos: 1 });
    expect(parseSubscription('cmd/a')).toEqual({ topic: 'cmd/a', qos: 0 });
  });

  it('rejects malformed rules, bad wildcards and qos out of range, naming the problem', () => {
    expect(() => parseAclRule('permit publish a')).toThrow(/permission/);
    expect(() => parseAclRule('allow')).toThrow(/expected/);
    expect(() => parseAclRule('allow publish a/#/b')).toThrow(/"#" only last/);
    expect(() => parseSubscription('a/b:3')).toThrow(/qos must be 0, 1 or 2/);
  });

  it('rejects empty, over-long and wildcard client ids, and wildcards in publish topics', () => {
    expect(ClientId.safeParse('').success).toBe(false);
    expect(ClientId.safeParse('x'.repeat(129)).success).toBe(false);
    expect(ClientId.safeParse('a/b').success).toBe(false);
    expect(ClientId.safeParse('dev\u0000ice').success).toBe(false);
    expect(TopicName.safeParse('a/+/b').success).toBe(false);
    expect(TopicName.safeParse('a/b').success).toBe(true);
  });

  it('requires exactly one of password and generatePassword, naming the field', () => {
    expect(() => parseInput(ProvisionInput, { clientId: 'd1' })).toThrow(InputError);
    expect(() => parseInput(ProvisionInput, { clientId: 'd1' })).toThrow(/password: give exactly one/);
    expect(() => parseInput(ProvisionInput, { clientId: 'd1', password: 'short' })).toThrow(/password: must be at least 8/);
    expect(parseInput(ProvisionInput, { clientId: 'd1', generatePassword: true })).toMatchObject({ clientId: 'd1', acl: [], subscriptions: [] });
  });

  it('ends every device ACL with a deny of everything else (EMQX no_match defaults to allow)', () => {
    expect(effectiveAcl([{ permission: 'allow', action: 'publish', topic: 'a' }]).at(-1)).toEqual({ permission: 'deny', action: 'all', topic: '#' });
  });
});
