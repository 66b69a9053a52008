import { createHash, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

/**
 * EMQX's built-in database password authentication (`password_based:built_in_database`). Users
 * are keyed by client id or by username (`user_id_type`), and their passwords are checked with the
 * authenticator's `password_hash_algorithm` as EMQX does it
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authn/emqx_authn_password_hashing.erl
 * and apps/emqx/src/emqx_passwd.erl): the simple algorithms hash `salt ++ password` (prefix, EMQX's
 * default), `password ++ salt` (suffix) or the password alone (disable) and print it as lower-case
 * hex; pbkdf2 derives a key from the password and salt. bcrypt is not modelled. Passwords are never
 * kept in plaintext.
 */

export const SimpleHash = z.strictObject({
  name: z.enum(['plain', 'md5', 'sha', 'sha256', 'sha512']),
  salt_position: z.enum(['disable', 'prefix', 'suffix']).default('prefix'),
});
export const Pbkdf2Hash = z.strictObject({
  name: z.literal('pbkdf2'),
  mac_fun: z.enum(['sha', 'sha224', 'sha256', 'sha384', 'sha512']),
  iterations: z.int().positive(),
  dk_length: z.int().positive().optional(),
});
export const PasswordHashAlgorithm = z.union([SimpleHash, Pbkdf2Hash], {
  error: 'must be {name: plain|md5|sha|sha256|sha512, salt_position} or {name: pbkdf2, mac_fun, iterations} (bcrypt is not modelled)',
});
export type PasswordHashAlgorithm = z.infer<typeof PasswordHashAlgorithm>;

/** `password_hash_algorithm`'s default (emqx_authn_password_hashing:type_ro/1). */
export const DEFAULT_PASSWORD_HASH: PasswordHashAlgorithm = { name: 'sha256', salt_position: 'prefix' };

const NODE_DIGEST = { md5: 'md5', sha: 'sha1', sha224: 'sha224', sha256: 'sha256', sha384: 'sha384', sha512: 'sha512' } as const;

/** The stored hash of a password under an algorithm and salt (emqx_passwd:hash/2). */
export function hashPassword(algorithm: PasswordHashAlgorithm, password: string | Buffer, salt: string): string {
  const secret = Buffer.isBuffer(password) ? password : Buffer.from(password, 'utf8');
  const saltBytes = Buffer.from(salt, 'utf8');
  if (algorithm.name === 'pbkdf2') {
    const digest = NODE_DIGEST[algorithm.mac_fun];
    const length = algorithm.dk_length ?? createHash(digest).digest().length;
    return pbkdf2Sync(secret, saltBytes, algorithm.iterations, length, digest).toString('hex');
  }
  const data =
    algorithm.salt_position === 'prefix'
      ? Buffer.concat([saltBytes, secret])
      : algorithm.salt_position === 'suffix'
        ? Buffer.concat([secret, saltBytes])
        : secret;
  if (algorithm.name === 'plain') return data.toString('utf8');
  return createHash(NODE_DIGEST[algorithm.name]).update(data).digest('hex');
}

/** EMQX's salt: 16 random bytes printed as 32 hex characters; none for `plain` or `disable`. */
function newSalt(algorithm: PasswordHashAlgorithm): string {
  if (algorithm.name === 'plain' || (algorithm.name !== 'pbkdf2' && algorithm.salt_position === 'disable')) return '';
  return randomBytes(16).toString('hex');
}

/** emqx_passwd's compare_secure_caseless: hex hashes compare without regard to case. */
function sameHash(expected: string, actual: string): boolean {
  const a = Buffer.from(expected.toLowerCase(), 'utf8');
  const b = Buffer.from(actual.toLowerCase(), 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface AuthnUser {
  user_id: string;
  is_superuser: boolean;
}

interface StoredUser {
  userId: string;
  passwordHash: string;
  salt: string;
  isSuperuser: boolean;
}

export type PasswordCheck = { result: 'ok'; isSuperuser: boolean } | { result: 'not_found' | 'bad_password' };

export interface PlainImportEntry {
  user_id: string;
  password: string;
  is_superuser?: boolean;
}
export interface HashImportEntry {
  user_id: string;
  password_hash: string;
  salt?: string;
  is_superuser?: boolean;
}
/** The 5.8.2+ `import_users` response body. */
export interface ImportSummary {
  total: number;
  success: number;
  override: number;
  skipped: number;
  failed: number;
}

function publicView(user: StoredUser): AuthnUser {
  return { user_id: user.userId, is_superuser: user.isSuperuser };
}

/**
 * The users of the one built-in database authenticator. New passwords are hashed with the current
 * `algorithm`; changing the algorithm keeps the stored hashes, which are then checked with the new
 * one (emqx_authn_mnesia:update/2 only replaces the state), as in EMQX.
 */
export class AuthnUserStore {
  private readonly users = new Map<string, StoredUser>();
  algorithm: PasswordHashAlgorithm = DEFAULT_PASSWORD_HASH;

  /** Ordered by user id, as EMQX's `ordered_set` table lists them. */
  list(): AuthnUser[] {
    return [...this.users.values()].sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0)).map(publicView);
  }

  get(userId: string): AuthnUser | undefined {
    const user = this.users.get(userId);
    return user && publicView(user);
  }

  /** Returns undefined when the user already exists. */
  create(userId: string, password: string, isSuperuser: boolean): AuthnUser | undefined {
    if (this.users.has(userId)) return undefined;
    const user = this.withPassword(userId, password, isSuperuser);
    this.users.set(userId, user);
    return publicView(user);
  }

  update(userId: string, changes: { password?: string; isSuperuser?: boolean }): AuthnUser | undefined {
    const existing = this.users.get(userId);
    if (!existing) return undefined;
    const updated =
      changes.password === undefined ? { ...existing } : this.withPassword(userId, changes.password, existing.isSuperuser);
    if (changes.isSuperuser !== undefined) updated.isSuperuser = changes.isSuperuser;
    this.users.set(userId, updated);
    return publicView(updated);
  }

  delete(userId: string): boolean {
    return this.users.delete(userId);
  }

  /** Deleting the authenticator destroys its users (emqx_authn_mnesia:destroy/1). */
  clear(): void {
    this.users.clear();
  }

  /**
   * Existing users are overwritten (`override`); a record identical to the stored one is
   * `skipped`; new users count as `success` (emqx_authn_mnesia:insert_user/2). Plain passwords
   * get a fresh salt, so re-importing a plain user always overrides.
   */
  importPlain(entries: PlainImportEntry[]): ImportSummary {
    return this.importRecords(entries.map((e) => this.withPassword(e.user_id, e.password, e.is_superuser ?? false)));
  }

  /** Hashes are stored as given and checked at CONNECT with the authenticator's algorithm. */
  importHashed(entries: HashImportEntry[]): ImportSummary {
    return this.importRecords(
      entries.map((e) => ({
        userId: e.user_id,
        passwordHash: e.password_hash,
        salt: e.salt ?? '',
        isSuperuser: e.is_superuser ?? false,
      })),
    );
  }

  /** Checks a CONNECT's password for the user id the authenticator's `user_id_type` picked. */
  checkPassword(userId: string, password: Buffer | string): PasswordCheck {
    const user = this.users.get(userId);
    if (!user) return { result: 'not_found' };
    if (!sameHash(user.passwordHash, hashPassword(this.algorithm, password, user.salt))) return { result: 'bad_password' };
    return { result: 'ok', isSuperuser: user.isSuperuser };
  }

  private withPassword(userId: string, password: string, isSuperuser: boolean): StoredUser {
    const salt = newSalt(this.algorithm);
    return { userId, passwordHash: hashPassword(this.algorithm, password, salt), salt, isSuperuser };
  }

  private importRecords(records: StoredUser[]): ImportSummary {
    const summary: ImportSummary = { total: records.length, success: 0, override: 0, skipped: 0, failed: 0 };
    for (const record of records) {
      const existing = this.users.get(record.userId);
      if (!existing) {
        summary.success++;
      } else if (
        existing.passwordHash === record.passwordHash &&
        existing.salt === record.salt &&
        existing.isSuperuser === record.isSuperuser
      ) {
        summary.skipped++;
        continue;
      } else {
        summary.override++;
      }
      this.users.set(record.userId, record);
    }
    return summary;
  }
}
