import { describe, expect, it } from 'vitest';
import { ClientId, ProvisionInput, TopicName, effectiveAcl, identifierProblem, parseAclRule, parseSubscription } from '../../src/domain/schemas/device';
import { renderTopic } from '../../src/domain/schemas/campaign-template';
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

  describe('one identifier rule for client ids, usernames and topic template values', () => {
    const refused: [string, string, RegExp][] = [
      ['a "+" that would widen an ACL topic', 'dev+1', /must not contain "\+" \(position 4\).*use "-", "_", "." or ":" instead/],
      ['a "#"', '#', /must not contain "#"/],
      ['a "/"', 'a/b', /must not contain "\/"/],
      ['NUL', 'dev\u0000ice', /control character \(U\+0000\) at position 4; remove it/],
      ['a C0 control', 'dev\u001bice', /control character \(U\+001B\)/],
      ['a C1 control', 'dev\u0085ice', /C1 control character \(U\+0085\)/],
      ['a bidi override', 'dev\u202eice', /bidirectional text control \(U\+202E\)/],
      ['a bidi isolate', 'dev\u2067ice', /bidirectional text control \(U\+2067\)/],
      ['a zero-width space', 'dev\u200bice', /zero-width character \(U\+200B\)/],
      ['a byte order mark', '\ufeffdevice', /zero-width character \(U\+FEFF\) at position 1/],
      ['a lone high surrogate', 'dev\ud800', /lone surrogate/],
      ['a lone low surrogate', 'dev\udc00x', /lone surrogate/],
      ['over 128 UTF-8 bytes', 'é'.repeat(65), /must be at most 128 bytes in UTF-8 \(it is 130\); shorten it/],
      ['surrounding whitespace', ' dev', /must not start or end with whitespace/],
    ];
    it.each(refused)('refuses %s, naming the problem and the fix', (_what, value, message) => {
      expect(identifierProblem(value)).toMatch(message);
      expect(() => parseInput(ProvisionInput, { clientId: value, generatePassword: true })).toThrow(/^clientId: /);
      expect(() => parseInput(ProvisionInput, { clientId: 'ok', username: value, generatePassword: true })).toThrow(/^username: /);
      expect(() => renderTopic('fw/${v}', 'ok', { v: value })).toThrow(/the value of \$\{v\}/);
    });

    it('never echoes the offending control character', () => {
      for (const value of ['a\u001bb', 'a\u202eb', 'a\u200bb', 'a\ud800b']) {
        const problem = identifierProblem(value) ?? '';
        expect(problem).not.toContain(value.charAt(1));
      }
    });

    it('accepts ordinary ids, non-Latin letters and surrogate pairs', () => {
      for (const value of ['sensor-1', 'Gerät_7', '设备.42', 'dev:😀', 'x'.repeat(128)]) expect(identifierProblem(value)).toBeNull();
    });

    it('refuses the two lone-surrogate ids that UTF-8 would collapse into one key', () => {
      const [a, b] = ['dev\ud800', 'dev\ud801'];
      // Both encode to "dev" + U+FFFD: one MongoDB _id, one workflow id.
      expect(Buffer.from(a, 'utf8').equals(Buffer.from(b, 'utf8'))).toBe(true);
      expect(ClientId.safeParse(a).success).toBe(false);
      expect(ClientId.safeParse(b).success).toBe(false);
    });
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
