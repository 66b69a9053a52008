import { createHash, randomBytes } from 'node:crypto';
import type { PasswordHash } from '../../domain/schemas/device';

/**
 * Device passwords stay with the client that has them: it generates or reads the password, hashes
 * it the way EMQX's built-in database authenticator does by default, and hands workflows only the
 * hash. So no plaintext password is ever in workflow history, in MongoDB or in the Temporal UI.
 *
 * The algorithm is EMQX's default, `{name: sha256, salt_position: prefix}`: hex(sha256(salt ++
 * password)) with a salt of 16 random bytes printed as 32 hex digits, as `gen_salt/1` and `hash/2`
 * do in https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authn/emqx_authn_password_hashing.erl.
 * `device-ops emqx setup` configures the authenticator with that algorithm.
 */

/** 24 characters from 144 random bits; shown once by the client that generated it. */
export function generatePassword(): string {
  return randomBytes(18).toString('base64url');
}

/** sha256 with the salt as prefix; `salt` is for tests with EMQX's vectors, a fresh one otherwise. */
export function hashPassword(password: string, salt: string = randomBytes(16).toString('hex')): PasswordHash {
  const passwordHash = createHash('sha256').update(salt, 'utf8').update(password, 'utf8').digest('hex');
  return { passwordHash, salt };
}
