import type { AclRule } from './schemas/device';

/**
 * The device rules that workflow code needs, without zod (the schemas are in ./schemas/device; see
 * ./campaign.ts for why workflow code stays clear of zod).
 */

export const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/**
 * The longest identifier (client id, username, campaign template value) in UTF-8 bytes. EMQX
 * allows client ids up to `mqtt.max_clientid_len` bytes (default 65535, at least 23:
 * https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_schema.erl `max_clientid_len`,
 * checked by `check_client_id` in apps/emqx/src/emqx_packet.erl); here an identifier is also a
 * workflow id part, a MongoDB key and a topic level, so the project keeps it to 128 bytes.
 */
export const MAX_IDENTIFIER_BYTES = 128;

/** Characters refused in an identifier, each with the name the error uses for it. */
const REFUSED: { pattern: RegExp; what: string }[] = [
  { pattern: /[\u0000-\u001f\u007f]/, what: 'a control character' },
  { pattern: /[\u0080-\u009f]/, what: 'a C1 control character' },
  // Embeddings, overrides, isolates and marks: they make a printed id read as another one.
  { pattern: /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/, what: 'a bidirectional text control' },
  { pattern: /[\u180e\u200b-\u200d\u2060\ufeff]/, what: 'a zero-width character' },
  // A lone surrogate is not Unicode: UTF-8 turns every one into U+FFFD, so two ids would become one key.
  { pattern: /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/, what: 'a lone surrogate (not valid Unicode)' },
];

function codePoint(char: string): string {
  return `U+${(char.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
}

function utf8Bytes(value: string): number {
  let bytes = 0;
  for (const char of value) {
    const cp = char.codePointAt(0) ?? 0;
    bytes += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  }
  return bytes;
}

/**
 * What is wrong with an identifier that can reach an MQTT topic (client id, username, campaign
 * template value), or null. One rule for all of them: rendered into an ACL rule or a topic, a `+`,
 * `#` or `/` would widen it (`devices/${username}` with username `#` is `devices/#`). The message
 * names the problem and the fix without echoing the offending character.
 */
export function identifierProblem(value: string): string | null {
  if (value.length === 0) return 'must not be empty';
  const bytes = utf8Bytes(value);
  if (bytes > MAX_IDENTIFIER_BYTES) return `must be at most ${MAX_IDENTIFIER_BYTES} bytes in UTF-8 (it is ${bytes}); shorten it`;
  const wildcard = /[+#/]/.exec(value);
  if (wildcard) {
    return `must not contain "${wildcard[0]}" (position ${wildcard.index + 1}): "+", "#" and "/" are MQTT wildcards and level separators; use "-", "_", "." or ":" instead`;
  }
  if (value.includes('${')) return 'must not contain "${": EMQX would read it as a placeholder in an ACL topic; remove it';
  for (const { pattern, what } of REFUSED) {
    const found = pattern.exec(value);
    if (found) return `contains ${what} (${codePoint(found[0])}) at position ${found.index + 1}; remove it`;
  }
  if (value.trim() !== value) return 'must not start or end with whitespace; trim it';
  return null;
}

/**
 * A device password as EMQX's built-in database stores it with its default algorithm (sha256, salt
 * as prefix): `passwordHash` = hex(sha256(salt ++ password)), `salt` the text EMQX keeps beside it
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx_auth/src/emqx_authn/emqx_authn_password_hashing.erl).
 * The client hashes; workflows, activities and history only ever see this.
 */
export interface PasswordHash {
  passwordHash: string;
  salt: string;
}

/** The MQTT username a device logs in with: its client id unless given (docs/cli.md). */
export function usernameOf(input: { clientId: string; username?: string }): string {
  return input.username ?? input.clientId;
}

/**
 * Least privilege: the device's own rules, then a final deny of everything else for this client,
 * because EMQX's `authorization.no_match` defaults to allow
 * (https://github.com/emqx/emqx/blob/v5.8.9/apps/emqx/src/emqx_schema.erl `no_match`).
 */
export function effectiveAcl(rules: AclRule[]): AclRule[] {
  return [...rules, { permission: 'deny', action: 'all', topic: '#' }];
}
