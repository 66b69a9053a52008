import { describe, expect, it } from 'vitest';
import { generatePassword, hashPassword } from '../../src/starter/client/credentials';

describe('device password hashing (the client hashes, workflows see only the hash)', () => {
  it("matches EMQX's sha256 vector with the salt as prefix (EMQX's default salt_position)", () => {
    // https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/test/emqx_authn/emqx_authn_password_hashing_SUITE.erl
    // hash_examples(): password <<"sha256">>, salt <<"salt">>, #{name => sha256, salt_position => prefix}
    expect(hashPassword('sha256', 'salt')).toEqual({ passwordHash: 'ac63a624e7074776d677dd61a003b8c803eb11db004d0ec6ae032a5d7c9c5caf', salt: 'salt' });
  });

  it('salts each hash with 16 random bytes printed as 32 hex digits, as gen_salt/1 does', () => {
    const a = hashPassword('same-password');
    const b = hashPassword('same-password');
    expect(a.salt).toMatch(/^[0-9a-f]{32}$/);
    expect(a.salt).not.toBe(b.salt);
    expect(a.passwordHash).not.toBe(b.passwordHash);
    expect(hashPassword('same-password', a.salt)).toEqual(a);
  });

  it('generates distinct 24-character passwords', () => {
    const a = generatePassword();
    expect(a).toMatch(/^[A-Za-z0-9_-]{24}$/);
    expect(generatePassword()).not.toBe(a);
  });
});
