import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * EMQX built-in database password authentication, `user_id_type = username`, with the
 * `sha256` algorithm and `salt_position = suffix` (reference §2): stored hash is
 * hex(sha256(password ++ salt)). Passwords are never kept in plaintext.
 */

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

export function hashPassword(password: string | Buffer, salt: string): string {
  return createHash('sha256')
    .update(Buffer.concat([Buffer.isBuffer(password) ? password : Buffer.from(password, 'utf8'), Buffer.from(salt, 'utf8')]))
    .digest('hex');
}

/** EMQX's salt: 16 random bytes printed as 32 hex characters. */
function newSalt(): string {
  return randomBytes(16).toString('hex');
}

function publicView(user: StoredUser): AuthnUser {
  return { user_id: user.userId, is_superuser: user.isSuperuser };
}

export class AuthnUserStore {
  private readonly users = new Map<string, StoredUser>();

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

  /**
   * Existing users are overwritten (`override`); a record identical to the stored one is
   * `skipped`; new users count as `success` (emqx_authn_mnesia:insert_user/2). Plain passwords
   * get a fresh salt, so re-importing a plain user always overrides.
   */
  importPlain(entries: PlainImportEntry[]): ImportSummary {
    return this.importRecords(entries.map((e) => this.withPassword(e.user_id, e.password, e.is_superuser ?? false)));
  }

  importHashed(entries: HashImportEntry[]): ImportSummary {
    return this.importRecords(
      entries.map((e) => ({
        userId: e.user_id,
        passwordHash: e.password_hash.toLowerCase(),
        salt: e.salt ?? '',
        isSuperuser: e.is_superuser ?? false,
      })),
    );
  }

  /** Checks an MQTT CONNECT's password; `user_id` is the MQTT username. */
  checkPassword(userId: string, password: Buffer | string): PasswordCheck {
    const user = this.users.get(userId);
    if (!user) return { result: 'not_found' };
    const expected = Buffer.from(user.passwordHash, 'hex');
    const actual = Buffer.from(hashPassword(password, user.salt), 'hex');
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) return { result: 'bad_password' };
    return { result: 'ok', isSuperuser: user.isSuperuser };
  }

  private withPassword(userId: string, password: string, isSuperuser: boolean): StoredUser {
    const salt = newSalt();
    return { userId, passwordHash: hashPassword(password, salt), salt, isSuperuser };
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
